// The browser test (run by scripts/web-test.sh): Debian's headless chromium opens the page
// over a loopback server, types a prompt, sets temperature 0, generates 50 tokens, and checks
// them against the host's scalar-kernel CLI: the prompt's ids, the generated ids, the text,
// and that the text arrived token by token. Every wait is bounded.
//
//   node browser.mjs URL PROMPT_FILE PROMPT_IDS IDS TEXT_FILE
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const [url, promptFile, wantPromptIds, wantIds, textFile] = process.argv.slice(2);
const prompt = readFileSync(promptFile, "utf8");
// The CLI ends its output with one newline of its own.
const wantText = readFileSync(textFile, "utf8").replace(/\n$/, "");
const TOKENS = wantIds.split(",").length;
const WAIT_MS = Number(process.env.WEB_TEST_WAIT_MS || 120000);

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) {
    passed++;
    console.log(`ok: ${name}`);
  } else {
    failed++;
    console.log(`FAILED: ${name}\n${detail}`);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout: 60000,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
  page.on("console", (m) => console.log(`page console: ${m.text()}`));
  // Loopback only: any request off 127.0.0.1 is refused.
  await page.route((u) => new URL(u).hostname !== "127.0.0.1", (route) => route.abort());

  await page.goto(url, { timeout: 30000 });
  await page.waitForSelector('#output[data-state="ready"], #output[data-state="error"]');
  const loaded = await page.getAttribute("#output", "data-state");
  check("page loads the module, model and tokenizer", loaded === "ready",
    await page.textContent("#status"));
  if (loaded !== "ready") throw new Error("the page did not load");

  await page.fill("#prompt", prompt);
  await page.fill("#max-tokens", String(TOKENS));
  await page.$eval("#temperature", (el) => {
    el.value = "0";
    el.dispatchEvent(new Event("input"));
  });
  // Record each step of #output as it happens, to see the text arrive token by token.
  await page.evaluate(() => {
    const out = document.getElementById("output");
    window.steps = [];
    new MutationObserver(() => {
      window.steps.push([Number(out.dataset.count || 0), out.textContent.length]);
    }).observe(out, { attributes: true, attributeFilter: ["data-count"] });
  });
  await page.click("#generate");
  await page.waitForFunction(
    (n) => Number(document.getElementById("output").dataset.count) >= n, TOKENS);
  await page.waitForSelector('#output[data-state="done"], #output[data-state="error"]');

  const out = await page.$eval("#output", (el) => ({
    state: el.dataset.state,
    promptIds: el.dataset.promptIds,
    ids: el.dataset.ids,
    text: el.textContent,
    status: document.getElementById("status").textContent,
  }));
  console.log(`page: ${out.status}`);
  check("generation finished without error", out.state === "done", out.status);
  check("prompt ids equal the host tokenizer's", out.promptIds === wantPromptIds,
    `page: ${out.promptIds}\nhost: ${wantPromptIds}`);
  check(`${TOKENS} greedy ids equal the host's scalar kernels`, out.ids === wantIds,
    `page: ${out.ids}\nhost: ${wantIds}`);
  check("text equals the host's", out.text === prompt + wantText,
    `page: ${JSON.stringify(out.text)}\nhost: ${JSON.stringify(prompt + wantText)}`);
  const steps = await page.evaluate(() => window.steps);
  const growing = steps.every(([n, len], i) => i === 0 || (n > steps[i - 1][0] && len >= steps[i - 1][1]));
  check("text streamed: one update per token, in order", steps.length >= TOKENS && growing,
    JSON.stringify(steps));
} catch (e) {
  check("browser run", false, e.stack);
} finally {
  await browser.close();
}
console.log(`web: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
