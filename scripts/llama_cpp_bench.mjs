// llama.cpp's side of scripts/bench-vs-llama-cpp.sh: the prebuilt CPU build node-llama-cpp
// ships, one context holding every stream as its own sequence, so concurrent generations are
// decoded in one llama.cpp batch per step (its batched decode). Reads a JSON request on stdin:
//   {"model": PATH, "prompt": TEXT, "streams": [1, 16], "tokens": N, "prefill_tokens": P,
//    "threads": T}
// and prints one JSON line per measurement:
//   {"streams": S, "tokens_per_second": ..., "ttft_seconds": [...]}  (generation, S streams:
//     generated tokens over the wall time from the first submit to the last token; each
//     stream's time to its first token)
//   {"prefill_tokens": P, "seconds": ...}  (one P-token prompt evaluated, no generation)
// `SLUICE_NODE_MODULES` names the node_modules folder holding node-llama-cpp.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const { getLlama, LlamaLogLevel } = await import(
  pathToFileURL(join(process.env.SLUICE_NODE_MODULES, "node-llama-cpp", "dist", "index.js")).href
);
const request = JSON.parse(readFileSync(0, "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: request.model });
const withBos = (ids) =>
  model.tokens.shouldPrependBosToken && model.tokens.bos != null ? [model.tokens.bos, ...ids] : ids;
const prompt = withBos(Array.from(model.tokenize(request.prompt, false)));

async function generate(streams) {
  const context = await model.createContext({
    contextSize: streams * (prompt.length + request.tokens + 8),
    sequences: streams,
    batchSize: 512,
    threads: request.threads,
    flashAttention: false,
  });
  const sequences = Array.from({ length: streams }, () => context.getSequence());
  const started = performance.now();
  const ttft = [];
  let generated = 0;
  await Promise.all(
    sequences.map(async (sequence) => {
      let n = 0;
      for await (const _ of sequence.evaluate(prompt, { temperature: 0 })) {
        if (n === 0) ttft.push((performance.now() - started) / 1000);
        n += 1;
        generated += 1;
        if (n >= request.tokens) break;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await context.dispose();
  return { streams, tokens_per_second: generated / seconds, ttft_seconds: ttft };
}

async function prefill(tokens) {
  // A prompt of exactly `tokens` ids: the short prompt repeated.
  const ids = [];
  while (ids.length < tokens) ids.push(...prompt.slice(ids.length === 0 ? 0 : 1));
  const long = ids.slice(0, tokens);
  const context = await model.createContext({
    contextSize: tokens + 16,
    batchSize: Math.max(512, tokens),
    threads: request.threads,
    flashAttention: false,
  });
  const started = performance.now();
  await context.getSequence().evaluateWithoutGeneratingNewTokens(long);
  const seconds = (performance.now() - started) / 1000;
  await context.dispose();
  return { prefill_tokens: tokens, seconds };
}

await generate(1); // warm-up
for (const streams of request.streams) {
  process.stdout.write(JSON.stringify(await generate(streams)) + "\n");
}
if (request.prefill_tokens) {
  process.stdout.write(JSON.stringify(await prefill(request.prefill_tokens)) + "\n");
}
await model.dispose();
await llama.dispose();
