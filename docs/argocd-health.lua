-- Argo CD health check for sluice.dev/InferenceService.
-- Install it in argocd-cm under the key
--   resource.customizations.health.sluice.dev_InferenceService
-- (see docs/operator.md). It reads only what the operator writes: observedGeneration and the
-- Ready / Progressing / Degraded conditions. An SLO violation alone is not "Degraded": the
-- operator remediates it; the message says so.
local hs = {}

local function find(conditions, type_)
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c == nil then
    return ""
  end
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Sluice operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Sluice operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = obj.status.conditions
local degraded = find(conditions, "Degraded")
local ready = find(conditions, "Ready")
local progressing = find(conditions, "Progressing")
local slo = find(conditions, "SLOMet")

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end

if ready ~= nil and ready.status == "True" then
  if progressing ~= nil and progressing.status == "True" then
    hs.status = "Progressing"
    hs.message = describe(progressing)
    return hs
  end
  hs.status = "Healthy"
  hs.message = describe(ready)
  if slo ~= nil and slo.status == "False" then
    hs.message = hs.message .. " (SLO violated, operator remediating: " .. describe(slo) .. ")"
  end
  return hs
end

hs.status = "Progressing"
if progressing ~= nil and progressing.status == "True" then
  hs.message = describe(progressing)
else
  hs.message = describe(ready)
end
return hs
