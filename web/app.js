// The page: loads the module, the model and the tokenizer, and streams a generation into
// #output. For tests, #output carries data-state (loading, ready, running, done, error),
// data-prompt-ids and data-ids (comma-separated) and data-count (ids generated so far).
import { TokenFormer } from "./tokenformer.js";

const $ = (id) => document.getElementById(id);
const out = $("output");
const status = (s) => { $("status").textContent = s; };
let tf = null;
let stopping = false;

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.arrayBuffer();
}

async function load() {
  const [wasm, model, tokenizer] = await Promise.all([
    fetchBytes("dist/tokenformer_web.wasm"),
    fetchBytes("dist/shakespeare-q8_0.safetensors"),
    fetch("dist/tokenizer.json").then((r) => r.text()),
  ]);
  tf = await TokenFormer.load(wasm, model, tokenizer);
  const kb = (n) => `${(n / 1024).toFixed(0)} KiB`;
  status(`Ready: module ${kb(wasm.byteLength)}, model ${kb(model.byteLength)}, context ${tf.maxContext()} tokens.`);
  out.dataset.state = "ready";
  $("generate").disabled = false;
}

async function generate() {
  $("generate").disabled = true;
  $("stop").disabled = false;
  stopping = false;
  out.textContent = "";
  out.dataset.state = "running";
  const ids = [];
  out.dataset.ids = "";
  out.dataset.count = "0";
  try {
    const prompt = $("prompt").value;
    const promptIds = tf.start(prompt, {
      temperature: Number($("temperature").value),
      seed: Number($("seed").value),
    });
    out.dataset.promptIds = promptIds.join(",");
    const shown = document.createElement("span");
    shown.className = "prompt";
    shown.textContent = prompt;
    const text = document.createTextNode("");
    out.append(shown, text);
    const decoder = new TextDecoder("utf-8");
    const max = Number($("max-tokens").value);
    const t0 = performance.now();
    const report = (note = "") => {
      const secs = (performance.now() - t0) / 1000;
      status(`${ids.length} tokens, ${(ids.length / secs).toFixed(1)} tokens/s${note}`);
    };
    let full = false;
    while (ids.length < max && !stopping) {
      const id = tf.next();
      if (id === null) {
        full = true;
        break;
      }
      ids.push(id);
      // stream: true holds back a character split across tokens until it completes.
      text.appendData(decoder.decode(tf.tokenBytes(id), { stream: true }));
      out.dataset.ids = ids.join(",");
      out.dataset.count = String(ids.length);
      report();
      // Let the page paint each token before computing the next.
      await new Promise((r) => setTimeout(r, 0));
    }
    text.appendData(decoder.decode());
    report(full ? " (the context is full)" : stopping ? " (stopped)" : "");
    out.dataset.state = "done";
  } catch (e) {
    status(`Error: ${e.message}`);
    out.dataset.state = "error";
  } finally {
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

$("temperature").addEventListener("input", (e) => {
  $("temperature-value").textContent = Number(e.target.value).toFixed(2);
});
$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => { stopping = true; });
load().catch((e) => {
  status(`Error: ${e.message}`);
  out.dataset.state = "error";
});
