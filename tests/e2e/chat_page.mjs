// End-to-end test of the web chat page served by `huarizo serve` at `/`, in headless Chromium.
//
//   cd tests/e2e && npm ci
//   node tests/e2e/chat_page.mjs http://127.0.0.1:PORT [screenshot.png]
//
// Drives the page as a person would: waits for the model name, chats for two turns (checking
// that the reply streams in and that the whole history is re-sent), stops a long reply, then
// checks the Markdown renderer and error display with canned responses (page.route), and
// "New chat". Prints one JSON summary line; exits 0 on success, 1 on failure.
// CHROMIUM=/path/to/chromium overrides the browser (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const [base, screenshot] = process.argv.slice(2);
if (!base || !/^https?:\/\//.test(base)) {
  console.error("usage: node tests/e2e/chat_page.mjs http://127.0.0.1:PORT [screenshot.png]");
  process.exit(2);
}
const origin = new URL(base).origin;
const summary = { ok: false, url: origin + "/" };
const REPLY_TIMEOUT = 180_000; // a real model on two cores can be slow
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Failure extends Error {}
function check(cond, message) {
  if (!cond) throw new Failure(message);
}
let stepName = "start";
async function step(name, fn) {
  stepName = name;
  const t0 = Date.now();
  const out = await fn();
  (summary.steps ||= {})[name] = { ms: Date.now() - t0, ...(out || {}) };
}

const userDataDir = mkdtempSync(path.join(tmpdir(), "huarizo-e2e-"));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1100, height: 820 },
  });
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [], foreign = [], chatRequests = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("request", (r) => {
    if (!r.url().startsWith("data:") && new URL(r.url()).origin !== origin) foreign.push(r.url());
    if (r.method() === "POST" && r.url().endsWith("/v1/chat/completions")) chatRequests.push(r.postDataJSON());
  });

  const assistants = () => page.locator("#messages .msg.assistant");
  const last = () => assistants().last();
  // Records every change of the last assistant message, so that streaming is seen however fast
  // the server is (polling could miss a short reply).
  const watch = () => page.evaluate(() => {
    window.__obs = [];
    window.__mo?.disconnect();
    const record = () => {
      const all = document.querySelectorAll("#messages .msg.assistant");
      const el = all[all.length - 1];
      if (!el) return;
      window.__obs.push({ t: performance.now(), n: all.length, streaming: el.getAttribute("data-streaming") === "true",
        len: el.querySelector(".content").textContent.length,
        stop: !!document.getElementById("stop").offsetParent, send: !!document.getElementById("send").offsetParent });
    };
    window.__mo = new MutationObserver(record);
    window.__mo.observe(document.getElementById("messages"),
      { subtree: true, childList: true, characterData: true, attributes: true });
  });
  const observations = () => page.evaluate(() => window.__obs);
  const settings = async (values) => {
    await page.click("#settings-toggle");
    for (const [id, v] of Object.entries(values)) await page.fill("#" + id, String(v));
    await page.click("#settings-toggle");
  };
  // Sends a message and waits for the reply to finish; returns what it saw.
  const turn = async (text, { enter = false } = {}) => {
    const before = await assistants().count();
    const requestsBefore = chatRequests.length;
    await watch();
    await page.fill("#input", text);
    if (enter) await page.press("#input", "Enter"); else await page.click("#send");
    await page.locator("#messages .msg.user").last().filter({ hasText: text }).waitFor({ timeout: 5000 });
    await page.waitForFunction((n) => {
      const all = document.querySelectorAll("#messages .msg.assistant");
      return all.length === n + 1 && !all[n].hasAttribute("data-streaming");
    }, before, { timeout: REPLY_TIMEOUT, polling: 50 });
    const obs = (await observations()).filter((o) => o.n === before + 1);
    const streamed = obs.filter((o) => o.streaming && o.len > 0).map((o) => o.len);
    const during = obs.filter((o) => o.streaming);
    check(during.length > 0, "never saw the reply with data-streaming=\"true\"");
    check(during.every((o) => o.stop && !o.send), "#stop hidden or #send shown while generating");
    const grew = streamed.filter((len, i) => i === 0 || len > streamed[i - 1]);
    const reply = (await last().locator(".content").textContent()).trim();
    const meta = (await last().locator(".meta").textContent()).trim();
    check(reply.length > 0, `empty reply to ${JSON.stringify(text)}`);
    check(!(await page.locator("#stop").isVisible()), "#stop still visible after the reply");
    check(await page.locator("#send").isVisible(), "#send not visible after the reply");
    check(/tok\/s/.test(meta), `no tokens/s shown after the reply (meta: ${JSON.stringify(meta)})`);
    check(chatRequests.length === requestsBefore + 1, "expected exactly one POST /v1/chat/completions");
    return { reply, meta, streamedLengths: grew.slice(0, 12), growths: grew.length - 1, request: chatRequests.at(-1) };
  };

  await step("load", async () => {
    const res = await fetch(origin + "/v1/models");
    check(res.ok, `GET /v1/models: HTTP ${res.status}`);
    const models = await res.json();
    const id = models?.data?.[0]?.id;
    check(typeof id === "string" && id, "GET /v1/models lists no model id");
    await page.goto(origin + "/", { waitUntil: "load" });
    await page.locator("#model").filter({ hasText: id }).waitFor({ timeout: 15000 });
    for (const sel of ["#messages", "#input", "#send", "#stop", "#system", "#temperature", "#top_p", "#max_tokens", "#new-chat", "#model"]) {
      check(await page.locator(sel).count() === 1, `missing element ${sel}`);
    }
    check(!(await page.locator("#stop").isVisible()), "#stop visible while idle");
    summary.model = id;
  });

  await step("shift_enter", async () => {
    await page.fill("#input", "line one");
    await page.press("#input", "Shift+Enter");
    await page.type("#input", "line two");
    check(await page.inputValue("#input") === "line one\nline two", "Shift+Enter did not insert a newline");
    check(await page.locator("#messages .msg").count() === 0, "Shift+Enter sent the message");
    await page.fill("#input", "");
  });

  await step("settings", async () => {
    await settings({ system: "You are a helpful, concise assistant.", max_tokens: 128, temperature: 0.7, top_p: 0.95 });
    check(!(await page.locator("#max_tokens").isVisible()), "settings panel did not collapse");
  });

  await step("turn1", async () => {
    const r = await turn("What is the capital of France?", { enter: true });
    check(r.growths >= 1, `reply did not stream: lengths seen while streaming ${JSON.stringify(r.streamedLengths)}`);
    const q = r.request;
    check(q.stream === true && q.stream_options?.include_usage === true, "request lacks stream/stream_options");
    check(q.model === summary.model, `request model ${q.model} != ${summary.model}`);
    check(q.max_tokens === 128 && q.temperature === 0.7 && q.top_p === 0.95, "request sampling fields wrong: " + JSON.stringify(q));
    check(q.messages.length === 2 && q.messages[0].role === "system" && q.messages[1].role === "user", "turn 1 messages: " + JSON.stringify(q.messages));
    return { chars: r.reply.length, meta: r.meta, streamedLengths: r.streamedLengths, reply: r.reply.slice(0, 200) };
  });

  await step("turn2", async () => {
    const r = await turn("And what is a famous landmark there? Answer in one sentence.");
    const roles = r.request.messages.map((m) => m.role).join(",");
    check(roles === "system,user,assistant,user", "turn 2 did not re-send the history: " + roles);
    check(r.request.messages[2].content.trim().length > 0, "turn 2 re-sent an empty first reply");
    return { chars: r.reply.length, meta: r.meta, growths: r.growths, reply: r.reply.slice(0, 200) };
  });

  await step("stop", async () => {
    await settings({ max_tokens: 2000 });
    const before = await assistants().count();
    await page.fill("#input", "Write a very long story about llamas.");
    await page.click("#send");
    await page.waitForFunction((n) => {
      const el = document.querySelectorAll("#messages .msg.assistant")[n];
      return el && el.getAttribute("data-streaming") === "true" && el.querySelector(".content").textContent.length >= 40;
    }, before, { timeout: REPLY_TIMEOUT, polling: 50 });
    check(chatRequests.at(-1).max_tokens === 2000, "max_tokens 2000 not sent");
    const t0 = Date.now();
    await page.click("#stop");
    await page.waitForFunction((n) => !document.querySelectorAll("#messages .msg.assistant")[n].hasAttribute("data-streaming"),
      before, { timeout: 2000, polling: 20 }).catch(() => { throw new Failure("data-streaming still set 2 s after Stop"); });
    const stoppedMs = Date.now() - t0;
    const len1 = (await last().locator(".content").textContent()).length;
    await sleep(1000);
    const len2 = (await last().locator(".content").textContent()).length;
    check(len1 === len2, `text kept growing after Stop (${len1} -> ${len2})`);
    check(len1 > 0, "partial reply vanished after Stop");
    check(!(await page.locator("#stop").isVisible()) && await page.locator("#send").isVisible(), "buttons not reset after Stop");
    const meta = (await last().locator(".meta").textContent()).trim();
    check(/stopped/.test(meta), "meta does not say stopped: " + meta);
    return { stoppedMs, chars: len1, meta };
  });

  await step("after_stop", async () => {
    await settings({ max_tokens: 24 });
    const r = await turn("Thanks! Say goodbye in five words.");
    const msgs = r.request.messages;
    check(msgs.length === 8, `expected 8 messages after the stopped turn, got ${msgs.length}`);
    check(msgs[6].role === "assistant" && msgs[6].content.length > 0, "the stopped partial reply is not in the history");
    return { partialChars: msgs[6].content.length, chars: r.reply.length };
  });

  if (screenshot) {
    await step("screenshot", async () => {
      await page.screenshot({ path: screenshot });
      summary.screenshot = screenshot;
    });
  }

  // Page-only checks with canned responses: the server is not involved.
  await step("markdown", async () => {
    const md = "# Title\n\nSome **bold**, *italic* and `code <b>`.\n\n- one\n- two\n\n1. first\n2. second\n\n" +
      "```js\nconst x = '<script>alert(1)</script>';\n```\n\n<img src=x onerror=alert(1)> " +
      "[ok](https://example.com/a?b=1&c=2) [bad](javascript:alert(1))";
    const sse = [{ role: "assistant" }, { content: md.slice(0, 40) }, { content: md.slice(40) }]
      .map((delta) => `data: ${JSON.stringify({ id: "x", object: "chat.completion.chunk", choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`)
      .join("") + "data: [DONE]\n\n";
    await page.route("**/v1/chat/completions", (route) =>
      route.fulfill({ status: 200, contentType: "text/event-stream", body: sse }));
    await page.click("#new-chat");
    check(await page.locator("#messages .msg").count() === 0, "New chat did not clear the messages");
    await page.evaluate(() => { window.__xss = 0; window.alert = () => { window.__xss++; }; });
    await turn("markdown test");
    const c = last().locator(".content");
    check(await c.locator("h1").textContent() === "Title", "no <h1>");
    check(await c.locator("strong").first().textContent() === "bold", "no <strong>");
    check(await c.locator("em").first().textContent() === "italic", "no <em>");
    check(await c.locator("p code").first().textContent() === "code <b>", "inline code wrong");
    check(await c.locator("ul > li").count() === 2 && await c.locator("ol > li").count() === 2, "lists wrong");
    check(await c.locator("pre > code.language-js").textContent() === "const x = '<script>alert(1)</script>';", "fenced code wrong");
    check(await c.locator("img, script").count() === 0, "HTML from the model was rendered as HTML");
    check((await c.textContent()).includes("<img src=x onerror=alert(1)>"), "escaped HTML not shown as text");
    check(await c.locator("a").count() === 1 && await c.locator("a").getAttribute("href") === "https://example.com/a?b=1&c=2", "links wrong");
    check(await page.evaluate(() => window.__xss) === 0, "alert() was called");
    await page.unroute("**/v1/chat/completions");
  });

  await step("error", async () => {
    await page.route("**/v1/chat/completions", (route) => route.fulfill({
      status: 400, contentType: "application/json",
      body: JSON.stringify({ error: { message: "prompt is too long (5000 > 4096 tokens)", type: "invalid_request_error", code: "context_length_exceeded" } }),
    }));
    await page.fill("#input", "this will fail");
    await page.click("#send");
    await page.locator("#messages .msg.error").filter({ hasText: "prompt is too long" }).waitFor({ timeout: 5000 });
    check(await page.inputValue("#input") === "this will fail", "the failed message was not put back in the input");
    check(await page.locator("#send").isVisible(), "#send not back after an error");
    await page.unroute("**/v1/chat/completions");
    await page.click("#new-chat");
  });

  check(pageErrors.length === 0, "page errors: " + pageErrors.join("; "));
  check(foreign.length === 0, "requests to other origins: " + foreign.join(", "));
  stepName = "done";
  summary.ok = true;
} catch (e) {
  summary.failed = stepName;
  summary.error = e instanceof Failure ? e.message : String(e && e.stack || e);
  console.error(`FAIL [${stepName}]: ${summary.error}`);
} finally {
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
console.log(JSON.stringify(summary));
process.exit(summary.ok ? 0 : 1);
