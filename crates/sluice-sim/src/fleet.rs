//! The simulated fleet: replicas of a continuous-batching server behind a round-robin Service,
//! each stepping like `sluice-server`'s scheduler, driven by a [`Profile`].
//!
//! Per replica, as in `engine/scheduler.rs`: a request is refused with 429 when the replica
//! already holds `maxConcurrentRequests`; waiting requests join the batch up to `maxBatchSize`
//! while the KV cache can reserve `prompt + max_tokens` tokens for them (a request that cannot fit
//! even alone fails); each step prefills the newcomers' prompts one after another and decodes one
//! token for everyone else, so a step costs the newcomers' prefills plus one decode step of the
//! batch. A newcomer's first token comes at the end of its prefill step.
//!
//! The fleet obeys the knobs: new pods become Ready `startSeconds` after creation; removed pods
//! leave the Service at once and drain what they hold (the pod's `preStop` and drain delay);
//! a quantization change is each server's hot swap (no restart: the new weights load for
//! `swapSeconds` while the old ones serve, then admission pauses until the running batch
//! drains and the new weights take over); `max_tokens`
//! applies to requests arriving after the change. It implements the control loop's
//! [`Fleet`](sluice_slo::Fleet), so the `sluice` policy is the operator's own loop.

use std::collections::VecDeque;

use sluice_contract::metrics::MemoryType;
use sluice_contract::{Action, AppliedSettings, Quantization};
use sluice_slo::{MemorySli, Observed, Settings, Sli, SliValue};

use crate::profile::Profile;
use crate::record::{Done, End, Records};
use crate::workload::Arrival;

#[derive(Debug, Clone, Copy, PartialEq)]
enum PodState {
    Starting { ready_at: f64 },
    Ready,
    Draining,
}

#[derive(Debug, Clone)]
struct Seq {
    prompt: u32,
    /// Tokens it will generate (the request's, clamped by `max_tokens` and the context).
    target: u32,
    /// Tokens reserved in the KV cache.
    reserved: u64,
    generated: u32,
    arrived: f64,
    admitted: f64,
}

#[derive(Debug, Clone)]
struct Pod {
    created: f64,
    state: PodState,
    quantization: Quantization,
    /// A hot swap in progress: the new level and when it is loaded.
    swap: Option<(Quantization, f64)>,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    /// End of the step in progress.
    busy_until: Option<f64>,
    /// Peak KV bytes in use per tick slot (a ring of the last window's ticks).
    kv_peaks: VecDeque<u64>,
}

impl Pod {
    fn held(&self) -> usize {
        self.waiting.len() + self.running.len()
    }

    fn kv_in_use(&self, per_token: u64) -> u64 {
        self.running
            .iter()
            .map(|s| u64::from(s.prompt + s.generated) * per_token)
            .sum()
    }

    fn note_kv(&mut self, bytes: u64) {
        if let Some(p) = self.kv_peaks.back_mut() {
            *p = (*p).max(bytes);
        }
    }
}

/// A next event of the simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Pod becomes Ready.
    Ready(usize),
    /// Pod's hot swap completes.
    Swap(usize),
}

/// Replicas, their knobs and everything they recorded.
#[derive(Debug, Clone)]
pub struct SimFleet {
    profile: Profile,
    pods: Vec<Option<Pod>>,
    /// Round-robin cursor of the Service.
    cursor: usize,
    quantization: Quantization,
    max_tokens: u32,
    window_seconds: f64,
    ticks_per_window: usize,
    /// What the servers exported.
    pub records: Records,
    /// Pod-seconds of every pod that has gone (created to gone).
    pod_seconds_gone: f64,
    /// Tokens the `max_tokens` clamp cut from answered requests.
    pub truncated_tokens: u64,
    /// Requests whose prompt did not fit the context (answered 400; not an SLO error).
    pub invalid_requests: u64,
}

impl SimFleet {
    /// `initial.replicas` Ready pods at time 0. SLI reads cover `window_seconds`; the loop ticks
    /// every `interval_seconds` (for memory peaks over the window).
    pub fn new(
        profile: Profile,
        initial: AppliedSettings,
        window_seconds: f64,
        interval_seconds: f64,
    ) -> Self {
        let mut f = Self {
            profile,
            pods: Vec::new(),
            cursor: 0,
            quantization: initial.quantization,
            max_tokens: initial.max_tokens,
            window_seconds,
            ticks_per_window: (window_seconds / interval_seconds).ceil().max(1.0) as usize,
            records: Records::default(),
            pod_seconds_gone: 0.0,
            truncated_tokens: 0,
            invalid_requests: 0,
        };
        for _ in 0..initial.replicas.max(1) {
            f.add_pod(0.0, PodState::Ready);
        }
        f
    }

    /// The profile the replicas run.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    fn add_pod(&mut self, now: f64, state: PodState) -> usize {
        self.pods.push(Some(Pod {
            created: now,
            state,
            quantization: self.quantization,
            swap: None,
            waiting: VecDeque::new(),
            running: Vec::new(),
            busy_until: None,
            kv_peaks: VecDeque::from([0]),
        }));
        self.pods.len() - 1
    }

    fn live(&self) -> impl Iterator<Item = (usize, &Pod)> {
        self.pods
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
    }

    /// Pods asked for (Starting or Ready; draining pods are on their way out).
    pub fn replicas(&self) -> u32 {
        self.live()
            .filter(|(_, p)| p.state != PodState::Draining)
            .count() as u32
    }

    /// Pods Ready to serve.
    pub fn ready(&self) -> u32 {
        self.live()
            .filter(|(_, p)| p.state == PodState::Ready)
            .count() as u32
    }

    /// Pods that exist (and cost), draining ones included.
    pub fn pods_running(&self) -> u32 {
        self.live().count() as u32
    }

    /// Pod-seconds so far, up to `now`.
    pub fn pod_seconds(&self, now: f64) -> f64 {
        self.pod_seconds_gone + self.live().map(|(_, p)| now - p.created).sum::<f64>()
    }

    /// The knobs in force.
    pub fn applied(&self) -> AppliedSettings {
        AppliedSettings {
            replicas: self.replicas(),
            quantization: self.quantization,
            max_tokens: self.max_tokens,
        }
    }

    /// Settings as the operator would read them: a swap in progress is a rollout in progress.
    pub fn settings(&self) -> Settings {
        Settings {
            applied: self.applied(),
            ready_replicas: self.ready(),
            rollout_complete: self
                .live()
                .all(|(_, p)| p.swap.is_none() && p.quantization == self.quantization),
        }
    }

    /// Requests held (waiting + running) per Ready pod, the concurrency an HPA on
    /// `llm_in_flight_requests` averages.
    pub fn in_flight(&self) -> (f64, u32) {
        let ready: Vec<&Pod> = self
            .live()
            .filter(|(_, p)| p.state == PodState::Ready)
            .map(|(_, p)| p)
            .collect();
        let held: usize = ready.iter().map(|p| p.held()).sum();
        (held as f64, ready.len() as u32)
    }

    /// Requests waiting to join a batch, all pods (`llm_queue_depth` summed).
    pub fn queue_depth(&self) -> f64 {
        self.live().map(|(_, p)| p.waiting.len() as f64).sum()
    }

    /// A request arrives at the Service. Returns the pod to step, if one should start a step.
    pub(crate) fn arrive(&mut self, a: &Arrival, now: f64) -> Option<usize> {
        let ready: Vec<usize> = self
            .live()
            .filter(|(_, p)| p.state == PodState::Ready)
            .map(|(i, _)| i)
            .collect();
        let done = |end| Done {
            at: now,
            end,
            service: 0.0,
            tokens: 0,
        };
        if ready.is_empty() {
            self.records.done.push(done(End::Error));
            return None;
        }
        let ctx = self.profile.context_length;
        if a.prompt_tokens + 1 > ctx {
            self.invalid_requests += 1;
            return None;
        }
        let i = ready[self.cursor % ready.len()];
        self.cursor = self.cursor.wrapping_add(1);
        let cap = self.max_tokens.min(ctx - a.prompt_tokens).max(1);
        let target = a.output_tokens.clamp(1, cap);
        let max = self.profile.max_concurrent_requests as usize;
        let pod = self.pods[i].as_mut().expect("ready pod exists");
        if pod.held() >= max {
            self.records.done.push(done(End::Rejected));
            return None;
        }
        pod.waiting.push_back(Seq {
            prompt: a.prompt_tokens,
            target,
            reserved: u64::from(a.prompt_tokens + cap),
            generated: 0,
            arrived: now,
            admitted: now,
        });
        // Only the clamp's cut counts: what the context cuts, any max_tokens would have cut.
        let unclamped = a.output_tokens.clamp(1, (ctx - a.prompt_tokens).max(1));
        self.truncated_tokens += u64::from(unclamped.saturating_sub(target));
        pod.busy_until.is_none().then_some(i)
    }

    /// Admits what fits and starts the pod's next step; returns when it ends.
    pub(crate) fn start_step(&mut self, i: usize, now: f64) -> Option<f64> {
        let max_batch = self.profile.max_batch_size as usize;
        {
            let pod = self.pods[i].as_mut()?;
            if pod.busy_until.is_some() {
                return None;
            }
            // New weights loaded and the batch drained: swap them in (the server's scheduler
            // does this between steps).
            if let Some((q, at)) = pod.swap
                && at <= now
                && pod.running.is_empty()
            {
                pod.quantization = q;
                pod.swap = None;
            }
        }
        let (per_token, capacity) = {
            let pod = self.pods[i].as_ref()?;
            let v = self.profile.variant(pod.quantization);
            (
                v.kv_bytes_per_token,
                self.profile.kv_capacity_bytes(pod.quantization),
            )
        };
        let pod = self.pods[i].as_mut()?;
        // Once the new weights are loaded, nothing is admitted until the batch drains.
        let draining_for_swap = pod.swap.is_some_and(|(_, at)| at <= now);
        while !draining_for_swap && pod.running.len() < max_batch {
            let Some(front) = pod.waiting.front() else {
                break;
            };
            let needed = front.reserved * per_token;
            let reserved: u64 = pod.running.iter().map(|s| s.reserved * per_token).sum();
            if reserved + needed > capacity {
                if pod.running.is_empty() {
                    pod.waiting.pop_front();
                    self.records.done.push(Done {
                        at: now,
                        end: End::Error,
                        service: 0.0,
                        tokens: 0,
                    });
                    continue;
                }
                break;
            }
            let mut s = pod.waiting.pop_front().expect("front exists");
            s.admitted = now;
            self.records.admitted.push((now, now - s.arrived));
            pod.running.push(s);
        }
        if pod.running.is_empty() {
            return None;
        }
        let v = self.profile.variant(pod.quantization);
        let decoding = pod.running.iter().filter(|s| s.generated > 0).count();
        let prefill: f64 = pod
            .running
            .iter()
            .filter(|s| s.generated == 0)
            .map(|s| v.prefill_seconds(s.prompt))
            .sum();
        let end = now + prefill + v.decode_seconds(decoding);
        pod.busy_until = Some(end);
        Some(end)
    }

    /// The pod's step ends: every sequence gets a token; finished ones leave. Returns true when
    /// the pod is gone (drained).
    pub(crate) fn end_step(&mut self, i: usize, now: f64, step_seconds: f64) -> bool {
        let per_token;
        {
            let Some(pod) = self.pods[i].as_ref() else {
                return false;
            };
            per_token = self.profile.variant(pod.quantization).kv_bytes_per_token;
        }
        let pod = self.pods[i].as_mut().expect("checked");
        pod.busy_until = None;
        let mut decoded = 0u32;
        let mut k = 0;
        while k < pod.running.len() {
            let s = &mut pod.running[k];
            if s.generated == 0 {
                self.records.ttft.push((now, now - s.arrived));
            } else {
                decoded += 1;
            }
            s.generated += 1;
            if s.generated >= s.target {
                let s = pod.running.swap_remove(k);
                self.records.done.push(Done {
                    at: now,
                    end: End::Ok,
                    service: now - s.admitted,
                    tokens: s.generated,
                });
                continue;
            }
            k += 1;
        }
        self.records.steps.push((now, step_seconds, decoded));
        let kv = pod.kv_in_use(per_token);
        pod.note_kv(kv);
        if pod.state == PodState::Draining && pod.held() == 0 {
            self.pod_seconds_gone += now - pod.created;
            self.pods[i] = None;
            return true;
        }
        false
    }

    /// A Starting pod becomes Ready.
    pub(crate) fn pod_ready(&mut self, i: usize) {
        if let Some(p) = self.pods[i].as_mut()
            && matches!(p.state, PodState::Starting { .. })
        {
            p.state = PodState::Ready;
        }
    }

    /// A pod's new weights are loaded; returns true when it is idle, so a step (which swaps
    /// them in) should start now.
    pub(crate) fn swap_done(&mut self, i: usize, now: f64) -> bool {
        let Some(p) = self.pods[i].as_mut() else {
            return false;
        };
        match p.swap {
            Some((q, at)) if at <= now && p.busy_until.is_none() => {
                p.quantization = q;
                p.swap = None;
                !p.waiting.is_empty()
            }
            _ => false,
        }
    }

    /// Sets the replica count: new pods start (Ready after the profile's start time); removed
    /// pods are the Starting ones first, then the newest Ready ones, which drain.
    pub(crate) fn scale(&mut self, to: u32, now: f64) -> Vec<(f64, Next)> {
        let mut events = Vec::new();
        let to = to.max(1);
        let mut have = self.replicas();
        while have < to {
            let ready_at = now + self.profile.start_seconds;
            let i = self.add_pod(now, PodState::Starting { ready_at });
            events.push((ready_at, Next::Ready(i)));
            have += 1;
        }
        while have > to {
            let pick = self
                .live()
                .filter(|(_, p)| matches!(p.state, PodState::Starting { .. }))
                .map(|(i, _)| i)
                .last()
                .or_else(|| {
                    self.live()
                        .filter(|(_, p)| p.state == PodState::Ready)
                        .map(|(i, _)| i)
                        .last()
                });
            let Some(i) = pick else { break };
            let p = self.pods[i].as_mut().expect("live");
            if matches!(p.state, PodState::Starting { .. }) || p.held() == 0 {
                let created = p.created;
                self.pod_seconds_gone += now - created;
                self.pods[i] = None;
            } else {
                p.state = PodState::Draining;
            }
            have -= 1;
        }
        events
    }

    /// Switches every pod to `q` by hot swap.
    pub(crate) fn set_quantization(&mut self, q: Quantization, now: f64) -> Vec<(f64, Next)> {
        self.quantization = q;
        let swap = self.profile.variant(q).swap_seconds;
        let mut events = Vec::new();
        for (i, slot) in self.pods.iter_mut().enumerate() {
            let Some(p) = slot.as_mut() else { continue };
            if p.quantization == q && p.swap.is_none() {
                continue;
            }
            if matches!(p.state, PodState::Starting { .. }) {
                p.quantization = q;
                continue;
            }
            p.swap = Some((q, now + swap));
            events.push((now + swap, Next::Swap(i)));
        }
        events
    }

    /// Sets `max_tokens` for requests arriving from now on.
    pub(crate) fn set_max_tokens(&mut self, n: u32) {
        self.max_tokens = n.max(1);
    }

    /// Starts a new memory-peak slot; called once per loop tick.
    pub(crate) fn roll_memory(&mut self) {
        let keep = self.ticks_per_window;
        for p in self.pods.iter_mut().flatten() {
            p.kv_peaks.push_back(0);
            while p.kv_peaks.len() > keep + 1 {
                p.kv_peaks.pop_front();
            }
        }
    }

    /// The SLI snapshot the operator would read at `now` over the last window.
    pub fn sli(&self, now: f64) -> Sli {
        let w = self.window_seconds;
        let r = self.records.read(now - w, now);
        let k = |v: f64| SliValue::known(v, now);
        let maybe = |v: Option<f64>, why: &str| v.map_or_else(|| SliValue::unknown(why), k);
        let none = "no requests in the window";
        let mut s = Sli::all_unknown(now, w as u64, "not simulated");
        let ready = self.ready();
        s.ttft_p95_seconds = maybe(r.ttft_p95_bucketed, none);
        s.tpot_seconds = maybe(r.tpot, none);
        s.request_rate_per_second = k(r.finished as f64 / w);
        let ratio = |n: usize| (r.finished > 0).then(|| n as f64 / r.finished as f64);
        s.error_ratio = maybe(ratio(r.rejected + r.errors), none);
        s.internal_error_ratio = maybe(ratio(r.errors), none);
        s.rejection_ratio = maybe(ratio(r.rejected), none);
        s.queue_depth = k(self.queue_depth());
        s.running_sequences = k(self.live().map(|(_, p)| p.running.len() as f64).sum());
        s.tokens_per_second = k(r.tokens as f64 / w);
        s.queue_wait_seconds = maybe(r.queue_wait, none);
        s.service_time_seconds = maybe(r.service_time, none);
        s.reporting_pods = k(f64::from(ready));
        if self.profile.gpu && ready > 0 {
            s.gpu_utilization_ratio = k((r.busy_seconds / (w * f64::from(ready))).min(1.0));
        } else {
            s.gpu_utilization_ratio = SliValue::unknown("CPU server: no DCGM exporter");
        }
        s.memory = self.memory(now);
        s
    }

    fn memory(&self, now: f64) -> Vec<MemorySli> {
        let budget = self.profile.memory_budget_bytes as f64;
        let mb = |b: f64| b / f64::from(1u32 << 20);
        let (mut worst_kv, mut worst_vram, mut kv_sum, mut vram_sum, mut kv_cap, mut n) =
            (0.0f64, 0.0f64, 0.0, 0.0, 0.0, 0u32);
        for (_, p) in self
            .live()
            .filter(|(_, p)| !matches!(p.state, PodState::Starting { .. }))
        {
            let v = self.profile.variant(p.quantization);
            let kv = p.kv_peaks.iter().copied().max().unwrap_or(0) as f64;
            let cap = self.profile.kv_capacity_bytes(p.quantization) as f64;
            worst_kv = worst_kv.max(kv / cap);
            worst_vram = worst_vram.max((v.weight_bytes as f64 + kv) / budget);
            kv_sum += kv;
            vram_sum += v.weight_bytes as f64 + kv;
            kv_cap += cap;
            n += 1;
        }
        if n == 0 {
            return Vec::new();
        }
        let k = |v: f64| SliValue::known(v, now);
        vec![
            MemorySli {
                memory_type: MemoryType::Vram.as_str().into(),
                usage_megabytes: k(mb(vram_sum)),
                capacity_megabytes: k(mb(budget * f64::from(n))),
                usage_ratio: k(worst_vram),
            },
            MemorySli {
                memory_type: MemoryType::KvCache.as_str().into(),
                usage_megabytes: k(mb(kv_sum)),
                capacity_megabytes: k(mb(kv_cap)),
                usage_ratio: k(worst_kv),
            },
        ]
    }

    /// Carries out one action now; returns the events it schedules.
    pub(crate) fn act(&mut self, action: &Action, now: f64) -> Vec<(f64, Next)> {
        match *action {
            Action::Hold => Vec::new(),
            Action::ScaleReplicas { to, .. } => self.scale(to, now),
            Action::SetQuantization { to, .. } => self.set_quantization(to, now),
            Action::SetMaxTokens { to, .. } => {
                self.set_max_tokens(to);
                Vec::new()
            }
        }
    }
}

/// The simulated fleet as the control loop sees it: observing reads the SLIs; applying queues
/// the change's events for the simulation to schedule.
pub struct LoopFleet<'a> {
    /// The fleet.
    pub fleet: &'a mut SimFleet,
    /// Events the applied change scheduled.
    pub scheduled: Vec<(f64, Next)>,
}

impl sluice_slo::Fleet for LoopFleet<'_> {
    type Error = std::convert::Infallible;

    async fn observe(&mut self, now: f64) -> Result<Observed, Self::Error> {
        Ok(Observed {
            settings: self.fleet.settings(),
            sli: self.fleet.sli(now),
        })
    }

    async fn apply(&mut self, action: &Action, _: &Settings, now: f64) -> Result<(), Self::Error> {
        let ev = self.fleet.act(action, now);
        self.scheduled.extend(ev);
        Ok(())
    }
}
