// llama.cpp as a reference, through the prebuilt CPU build the node-llama-cpp npm package ships
// (no compiler, no network: `build: "never"`). Reads one JSON request on stdin, prints one JSON
// answer on stdout:
//
//   {"mode": "tokenize", "model": PATH, "texts": [...]}
//     → {"system": ..., "results": [{"text", "ids"}]}: llama.cpp's ids for each text, no BOS,
//       special-token text not parsed (the vocabulary alone is loaded);
//   {"mode": "greedy", "model": PATH, "prompts": [...], "tokens": N}
//     → {"system": ..., "results": [{"prompt", "ids", "greedy"}]}: the prompt's ids (BOS first
//       when the file asks for it) and llama.cpp's first N greedy tokens, generated to the end
//       whatever they are (no EOS stop), each prompt in a fresh context.
//
// The KV cache is f32, as Sluice's, and flash attention off, so the engines differ only in the
// order of their float sums. `SLUICE_NODE_MODULES` names the node_modules folder holding
// node-llama-cpp (scripts/install-deps.sh installs it under /var/tmp/sluice-node).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.SLUICE_NODE_MODULES;
if (!modules) {
  console.error("SLUICE_NODE_MODULES is not set");
  process.exit(2);
}
const { getLlama, LlamaLogLevel } = await import(
  pathToFileURL(join(modules, "node-llama-cpp", "dist", "index.js")).href
);

const request = JSON.parse(readFileSync(0, "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const results = [];
if (request.mode === "tokenize") {
  const model = await llama.loadModel({ modelPath: request.model, vocabOnly: true });
  for (const text of request.texts) {
    results.push({ text, ids: Array.from(model.tokenize(text, false)) });
  }
  await model.dispose();
} else if (request.mode === "greedy") {
  const model = await llama.loadModel({ modelPath: request.model });
  for (const prompt of request.prompts) {
    let ids = Array.from(model.tokenize(prompt, false));
    if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) {
      ids = [model.tokens.bos, ...ids];
    }
    const context = await model.createContext({
      contextSize: 512,
      batchSize: 512,
      threads: 1,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
    });
    const greedy = [];
    for await (const token of context.getSequence().evaluate(ids, { temperature: 0 })) {
      greedy.push(token);
      if (greedy.length >= request.tokens) break;
    }
    await context.dispose();
    results.push({ prompt, ids, greedy });
  }
  await model.dispose();
} else {
  console.error(`unknown mode ${JSON.stringify(request.mode)}`);
  process.exit(2);
}
process.stdout.write(JSON.stringify({ system: llama.systemInfo, results }) + "\n");
await llama.dispose();
