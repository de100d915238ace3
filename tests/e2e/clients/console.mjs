// Drives the Levitate web console in Debian's chromium through playwright-core (never a downloaded browser),
// for tests/e2e/test_console.py. One run is one phase of the story; the test does the gateway-side checks
// between phases. Input (env): CONSOLE_URL (the admin listener's base URL), ADMIN_KEY, PHASE, ARTIFACTS (the
// screenshot folder), and the phase's own variables below. Output: one JSON object on stdout (`ok`, what was
// seen, the session cookie and CSRF token, every page's HTML for the test's secret search); any failed step
// prints `{"ok": false, "error": ..., "step": ...}` and exits 1.
import { createRequire } from "node:module";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// playwright-core is pinned in ./node/package.json (the repo-local prefix every e2e Node client uses).
const require = createRequire(join(dirname(fileURLToPath(import.meta.url)), "node", "package.json"));
const { chromium } = require("playwright-core");

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const base = env("CONSOLE_URL").replace(/\/$/, "");
const adminKey = env("ADMIN_KEY");
const phase = env("PHASE");
const artifacts = env("ARTIFACTS");
mkdirSync(artifacts, { recursive: true });

// Without these flags Chromium tries the network for updates, sync and QUIC and hangs on a closed network.
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const result = { ok: false, phase, steps: [], pages: {} };
let step = "launch";
const profile = mkdtempSync(join(tmpdir(), "levitate-console-chromium-"));

// A browser that dies while starting (it happens on a loaded machine) gets two more tries, each with a fresh
// profile; a failure after that is the test's.
async function launch() {
  for (let attempt = 1; ; attempt++) {
    rmSync(profile, { recursive: true, force: true });
    mkdirSync(profile, { recursive: true });
    try {
      return await chromium.launchPersistentContext(profile, {
        executablePath: "/usr/bin/chromium", headless: true, args: ARGS, viewport: { width: 1400, height: 900 },
      });
    } catch (error) {
      if (attempt >= 3) throw error;
      process.stderr.write(`chromium did not start (attempt ${attempt}): ${String(error).split("\n")[0]}\n`);
    }
  }
}

let context;
try {
  context = await launch();
} catch (error) {
  rmSync(profile, { recursive: true, force: true });
  process.stdout.write(JSON.stringify({ ok: false, phase, step, error: String(error && error.stack || error) }) + "\n");
  process.exit(1);
}
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(20000);

async function shot(name) {
  await page.screenshot({ path: join(artifacts, `console-${name}.png`), fullPage: true });
}

async function visit(name) {
  step = `visit ${name}`;
  const response = await page.goto(`${base}/console/${name}`);
  if (!response || response.status() !== 200) throw new Error(`${name}: HTTP ${response && response.status()}`);
  result.pages[name] = await page.content();
}

async function rowText(table, text) {
  const row = page.locator(`#${table} tbody tr`, { hasText: text });
  return (await row.count()) ? (await row.first().innerText()) : null;
}

async function login() {
  step = "login with a wrong key";
  await page.goto(`${base}/console/overview`);
  if (!page.url().endsWith("/console/login")) throw new Error(`not sent to the login page: ${page.url()}`);
  await page.fill("input[name=key]", "not-the-admin-key");
  await page.click("#login button");
  await page.waitForSelector(".flash.error");
  result.steps.push("wrong key refused");
  if (phase === "1") await shot("login");
  step = "login";
  await page.fill("input[name=key]", adminKey);
  await Promise.all([page.waitForURL("**/console/overview"), page.click("#login button")]);
  const cookies = await context.cookies(`${base}/console/`);
  const session = cookies.find((c) => c.name === "levitate_console");
  if (!session) throw new Error("no session cookie");
  result.cookie = { value: session.value, httpOnly: session.httpOnly, sameSite: session.sameSite, expires: session.expires };
  result.csrf = await page.getAttribute("meta[name=csrf-token]", "content");
  result.steps.push("logged in");
}

async function phaseOne() {
  await visit("overview");
  step = "overview refreshes itself";
  await page.waitForFunction(() => document.body.dataset.refreshed !== undefined, null, { timeout: 10000 });
  result.overview = {
    accounts_healthy: await page.textContent("[data-field=accounts_healthy]"),
    accounts_forbidden: await page.textContent("[data-field=accounts_forbidden]"),
    accounts_locked: await page.textContent("[data-field=accounts_locked]"),
    requests_per_second: await page.textContent("[data-field=requests_per_second]"),
  };
  await shot("overview");
  await visit("accounts");
  step = "accounts listed";
  result.accounts = {};
  for (const email of env("ACCOUNTS").split(",")) result.accounts[email] = await rowText("accounts", email);
  step = "the forbidden account links to Google";
  const forbidden = page.locator("#accounts tbody tr", { hasText: env("FORBIDDEN_ACCOUNT") });
  result.forbidden_link = await forbidden.getByRole("link", { name: "fix it at Google" }).getAttribute("href");
  step = "disable an account";
  const victim = env("DISABLE_ACCOUNT");
  const row = page.locator("#accounts tbody tr", { hasText: victim });
  await Promise.all([page.waitForURL("**/console/accounts?flash=*"), row.getByRole("button", { name: "Disable" }).click()]);
  result.flash = await page.textContent(".flash");
  result.disabled_row = await rowText("accounts", victim);
  result.pages["accounts-after"] = await page.content();
  await shot("accounts");
}

async function phaseTwo() {
  step = "usage";
  await visit("usage");
  result.usage_row = await rowText("usage", env("USED_KEY"));
  result.chart_legend = (await page.locator("#chart ~ .legends .legend").allInnerTexts()).map((t) => t.trim());
  result.chart_bars = await page.locator("#chart rect").count();
  await shot("usage");
  step = "usage csv";
  const csv = await page.evaluate(async () => (await fetch(document.querySelector("#csv").href)).text());
  result.usage_csv = csv;
  step = "requests";
  await page.goto(`${base}/console/requests?key=${encodeURIComponent(env("USED_KEY"))}`);
  result.pages.requests = await page.content();
  result.request_rows = await page.locator("#requests tbody tr").allInnerTexts();
  await shot("requests");
  step = "edit a key's limits";
  await visit("keys");
  const keyName = env("EDIT_KEY");
  const row = page.locator("#keys tbody tr", { hasText: keyName });
  await row.locator("details.edit summary").click();
  await row.locator("input[name=rpm]").fill(env("EDIT_RPM"));
  await Promise.all([page.waitForURL("**/console/keys?flash=*"), row.getByRole("button", { name: "Save limits" }).click()]);
  result.edit_flash = await page.textContent(".flash");
  result.edited_row = await rowText("keys", keyName);
  step = "create a key";
  await page.fill("form.create input[name=name]", env("NEW_KEY"));
  await page.click("form.create button");
  await page.waitForSelector("#created-secret");
  result.created_secret = (await page.textContent("#created-secret")).trim();
  await visit("keys");
  result.keys_after_create = await page.content();
  await shot("keys");
  step = "config and reload";
  await visit("config");
  await Promise.all([page.waitForURL("**/console/config?flash=*"), page.click("form.reload button")]);
  result.reload_flash = await page.textContent(".flash");
  result.pages.config = await page.content();
  await shot("config");
  step = "enable the account again";
  await visit("accounts");
  const victim = page.locator("#accounts tbody tr", { hasText: env("DISABLE_ACCOUNT") });
  await Promise.all([page.waitForURL("**/console/accounts?flash=*"), victim.getByRole("button", { name: "Enable" }).click()]);
  result.enabled_row = await rowText("accounts", env("DISABLE_ACCOUNT"));
  step = "clear the forbidden mark";
  const forbidden = page.locator("#accounts tbody tr", { hasText: env("FORBIDDEN_ACCOUNT") });
  await Promise.all([page.waitForURL("**/console/accounts?flash=*"), forbidden.getByRole("button", { name: "Clear forbidden" }).click()]);
  result.cleared_row = await rowText("accounts", env("FORBIDDEN_ACCOUNT"));
  step = "clear the lockouts";
  const locked = page.locator("#accounts tbody tr", { hasText: env("LOCKED_ACCOUNT") });
  await Promise.all([page.waitForURL("**/console/accounts?flash=*"), locked.getByRole("button", { name: "Clear lockouts" }).click()]);
  result.unlocked_row = await rowText("accounts", env("LOCKED_ACCOUNT"));
  if (process.env.ADD_ACCOUNT) {
    step = "add an account through Google's sign-in";
    await visit("accounts");
    await Promise.all([page.waitForURL("**/console/oauth/callback?*"), page.click("form.add button")]);
    result.oauth_result = await page.textContent("#oauth-result");
    result.pages["oauth-result"] = await page.content();
    await shot("add-account");
    await Promise.all([page.waitForURL("**/console/accounts"), page.click("text=Back to the accounts")]);
    result.added_row = await rowText("accounts", process.env.ADD_ACCOUNT);
    result.pages["accounts-added"] = await page.content();
  }
  step = "logout";
  await Promise.all([page.waitForURL("**/console/login"), page.click("header .logout button")]);
  const after = await page.goto(`${base}/console/keys`);
  result.after_logout_url = page.url();
  result.after_logout_status = after && after.status();
}

try {
  await login();
  if (phase === "1") await phaseOne();
  else await phaseTwo();
  result.ok = true;
} catch (error) {
  result.error = String(error && error.stack || error);
  result.step = step;
  try { await shot(`failure-phase${phase}`); } catch (_) { /* the browser is gone */ }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(result.ok ? 0 : 1);
