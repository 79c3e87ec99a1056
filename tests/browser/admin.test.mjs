// The admin web page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): starts the real binary twice (the simulated upstream with --sim-only, and
// the gateway in front of it), signs in, checks the identities table, adds and removes a key,
// changes a setting, runs the chat tester, and saves screenshots (target/screenshots/).
//
//   cargo build --release && (cd tests/browser && npm ci) && node --test tests/browser/
//
// QWEN_GATEWAY_BIN overrides the binary; CHROMIUM_PATH the browser; SCREENSHOT_DIR the output.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, openSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(ROOT, "target");
const BIN = process.env.QWEN_GATEWAY_BIN || join(TARGET, "release", "qwen-gateway");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOT_DIR || join(TARGET, "screenshots");
const ADMIN_KEY = "sk-browser-admin-0123456789";
const USER_KEY = "sk-browser-user-0123456789";

const procs = [];
let context;
let profileDir;
let page;
let gatewayUrl;
const pageErrors = [];
const shots = [];

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function waitFor(url, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.status < 500) return;
    } catch (_) { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`${url} never answered`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function run(name, args, env) {
  const log = join(tmpdir(), `qwen-gateway-browser-${name}-${process.pid}.log`);
  const fd = openSync(log, "w");
  const child = spawn(BIN, args, { env, stdio: ["ignore", "ignore", fd] });
  procs.push({ child, log });
  return child;
}

async function shot(name) {
  const file = join(SHOTS, `admin-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(file);
}

async function admin(method, path, body) {
  const r = await fetch(gatewayUrl + path, {
    method,
    headers: { Authorization: `Bearer ${ADMIN_KEY}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  const simPort = await freePort();
  run("sim", ["--sim-only", "--sim-listen", `127.0.0.1:${simPort}`], { PATH: process.env.PATH });
  const sim = `http://127.0.0.1:${simPort}`;
  await waitFor(`${sim}/__sim/state`);
  const minted = await (await fetch(`${sim}/__sim/mint`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email: "demo@example.com", ttl_secs: 3600 }),
  })).json();
  const port = await freePort();
  run("gateway", [], {
    PATH: process.env.PATH,
    SERVER_PORT: String(port),
    LISTEN_ADDRESS: "127.0.0.1",
    THREADS: "2",
    METRICS_LISTEN: "off",
    QWEN_BASE_URL: sim,
    QWEN_TOKEN: minted.token,
    API_KEY: `${ADMIN_KEY},${USER_KEY}`,
  });
  gatewayUrl = `http://127.0.0.1:${port}`;
  await waitFor(`${gatewayUrl}/health`);

  const profile = mkdtempSync(join(tmpdir(), "qwen-gateway-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  profileDir = profile;
  page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });
  page.on("dialog", (d) => d.accept());
});

after(async () => {
  if (context) await context.close();
  for (const { child } of procs) child.kill("SIGKILL");
  if (profileDir) {
    try { rmSync(profileDir, { recursive: true, force: true, maxRetries: 5 }); } catch (_) { /* tmp */ }
  }
});

test("admin page: sign in, identities, keys, settings, usage, chat tester", async () => {
  const res = await page.goto(`${gatewayUrl}/admin`);
  assert.equal(res.status(), 200);
  const csp = res.headers()["content-security-policy"];
  assert.match(csp, /default-src 'none'/);
  assert.equal(res.headers()["x-frame-options"], "DENY");
  await page.locator("#login-key").waitFor();
  await shot("1-login");

  // A user key is not enough.
  await page.fill("#login-key", USER_KEY);
  await page.click("#login-submit");
  await page.locator("#login-error").filter({ hasText: "not the admin key" }).waitFor();
  assert.equal(await page.isVisible("#app-view"), false);

  // The admin key: the identities table shows the configured account.
  await page.fill("#login-key", ADMIN_KEY);
  await page.click("#login-submit");
  await page.locator("#app-view").waitFor({ state: "visible" });
  const row = page.locator("#identities-table tbody tr[data-identity='0']");
  await row.waitFor();
  const cells = await row.locator("td").allTextContents();
  assert.equal(cells[1], "token-1");
  assert.equal(cells[4], "healthy");
  assert.match(cells[5], /\d/, "the token's expiry is shown");
  assert.match(await page.textContent("#identities-summary"), /1 total · 1 healthy/);
  // The key is kept for this tab only.
  assert.equal(await page.evaluate(() => sessionStorage.getItem("qwen-gateway-admin-key")), ADMIN_KEY);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  await shot("2-identities");

  // Keys: add one (shown once), use it, remove it.
  await page.click("button[data-tab=keys]");
  await page.fill("#key-name", "browser key");
  await page.fill("#key-rpm", "30");
  await page.click("#key-add");
  await page.locator("#new-key").waitFor({ state: "visible" });
  const newKey = (await page.textContent("#new-key-value")).trim();
  assert.match(newKey, /^sk-qg-[0-9a-f]{64}$/);
  const keyRow = page.locator("#keys-table tbody tr", { hasText: "browser key" });
  await keyRow.waitFor();
  const keyCells = await keyRow.locator("td").allTextContents();
  assert.equal(keyCells[2], `sk-…${newKey.slice(-4)}`, "the table shows the key masked");
  assert.equal(keyCells[4], "30");
  const asNewKey = await fetch(`${gatewayUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${newKey}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "qwen3-max", messages: [{ role: "user", content: "hi" }] }),
  });
  assert.equal(asNewKey.status, 200);
  await shot("3-keys-added");
  await page.click("#new-key-hide");
  await keyRow.locator("button[data-remove-key]").click();
  await keyRow.waitFor({ state: "detached" });
  const afterRemoval = await fetch(`${gatewayUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${newKey}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "qwen3-max", messages: [{ role: "user", content: "hi" }] }),
  });
  assert.equal(afterRemoval.status, 401);
  await shot("4-keys-removed");

  // Settings: switch thinking output to <think> tags.
  await page.click("button[data-tab=settings]");
  await page.locator("#setting-think_output").waitFor();
  await page.selectOption("#setting-think_output", "think_tags");
  await page.click("#settings-save");
  await page.locator("#toast").filter({ hasText: "think_output" }).waitFor();
  const s = await admin("GET", "/admin/settings");
  assert.equal(s.body.settings.think_output, "think_tags");
  assert.equal(s.body.overrides.think_output, "think_tags");
  await shot("5-settings");

  // Chat tester: the simulated answer streams in, with the thinking in <think> tags now.
  await page.click("button[data-tab=chat]");
  await page.locator("#chat-model option[value='qwen3-max-thinking']").waitFor({ state: "attached" });
  await page.selectOption("#chat-model", "qwen3-max-thinking");
  await page.fill("#chat-prompt", "Hello from the browser");
  await page.click("#chat-send");
  await page.locator("#chat-status").filter({ hasText: "done" }).waitFor();
  const answer = await page.textContent("#chat-output");
  assert.match(answer, /^<think>/);
  assert.match(answer, /Echo: Hello from the browser/);
  assert.match(await page.textContent("#chat-usage"), /prompt \+ \d+ completion tokens/);
  await shot("6-chat");

  // Usage: the page's own API calls with the admin key (the model list, the chat) and the
  // removed key's request are counted.
  await page.click("button[data-tab=usage]");
  await page.waitForFunction(() => {
    const cell = document.querySelector("#usage-table tr[data-usage='admin'] td:nth-child(3)");
    return cell && Number(cell.textContent) >= 2;
  });
  const removedRow = page.locator("#usage-table tbody tr.muted", { hasText: "(removed)" });
  await removedRow.waitFor();
  assert.equal((await removedRow.locator("td").allTextContents())[2], "1");
  await shot("7-usage");

  // Signing out forgets the key.
  await page.click("#logout");
  await page.locator("#login-view").waitFor({ state: "visible" });
  assert.equal(await page.evaluate(() => sessionStorage.getItem("qwen-gateway-admin-key")), null);

  assert.deepEqual(pageErrors.filter((e) => !/status of 40[13]/.test(e)), [],
    "no script errors and no CSP violations");
});

test("screenshots are non-empty PNGs", () => {
  assert.equal(shots.length, 7);
  for (const f of shots) {
    const buf = readFileSync(f);
    assert.ok(statSync(f).size > 2000, `${f} is too small`);
    assert.deepEqual([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${f} is a PNG`);
  }
});
