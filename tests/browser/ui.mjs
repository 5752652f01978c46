// The web UI in real headless Chromium (Debian's `chromium`, driven by playwright-core),
// against a running textgate. Run by crates/cli/tests/e2e/web.rs, which starts the server
// and its users and passes them in the environment:
//
//   TEXTGATE_URL             http://127.0.0.1:PORT
//   TG_ADMIN, TG_ALICE, TG_BOB   "name:password" of an administrator and two users
//   TG_ADMIN_KEY             the administrator's API key (to inject inbound texts)
//   TG_ARTIFACTS             where screenshots go (not committed)
//   CHROMIUM                 the browser (default /usr/bin/chromium)
//
// Each step prints its name; the first failure prints what was expected and exits 1.
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const base = process.env.TEXTGATE_URL;
const [adminName, adminPw] = process.env.TG_ADMIN.split(":");
const [aliceName, alicePw] = process.env.TG_ALICE.split(":");
const [bobName, bobPw] = process.env.TG_BOB.split(":");
const adminKey = process.env.TG_ADMIN_KEY;
const artifacts = process.env.TG_ARTIFACTS || "browser-artifacts";
mkdirSync(artifacts, { recursive: true });

let step = "start";
function check(cond, what) {
  if (!cond) throw new Error(`${step}: ${what}`);
}
async function eventually(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${step}: ${what} (last: ${last})`);
}
function begin(name) {
  step = name;
  console.log(`step: ${name}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const failures = [];
const consoleErrors = [];

async function newUser() {
  const context = await browser.newContext({ baseURL: base });
  const page = await context.newPage();
  // Script errors and refused policies; a page answered with a 4xx on purpose (a wrong
  // password, a forged form) is logged by the browser too, and is not one.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      consoleErrors.push(`${page.url()}: ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  return { context, page };
}

async function signIn(page, name, password) {
  await page.goto("/login");
  await page.getByLabel("User name").fill(name);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

// axe-core in the page: no serious or critical violation.
async function accessible(page, name) {
  // Through the debugging protocol: the page's CSP (rightly) refuses inline scripts.
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
  check(result.length === 0, `accessibility of ${name}: ${result.join("; ")}`);
}

async function shot(page, name) {
  await page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true });
}

async function api(path, init = {}) {
  const r = await fetch(`${base}${path}`, {
    ...init,
    headers: { Authorization: `Bearer ${adminKey}`, "Content-Type": "application/json", ...(init.headers || {}) },
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}

try {
  const alice = await newUser();
  const { page } = alice;

  begin("a page without a session goes to the sign-in form");
  await page.goto("/outbox");
  check(new URL(page.url()).pathname === "/login", `at ${page.url()}`);
  await shot(page, "login");
  await accessible(page, "/login");

  begin("a wrong password is refused with a clear message");
  await page.getByLabel("User name").fill(aliceName);
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").waitFor();
  check((await page.getByRole("alert").innerText()).includes("wrong"), "no 'wrong' in the message");

  begin("signing in goes where the user was going");
  await page.goto("/login?next=%2Foutbox");
  await page.getByLabel("User name").fill(aliceName);
  await page.getByLabel("Password").fill(alicePw);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/outbox$/);
  const cookies = await alice.context.cookies();
  const session = cookies.find((c) => c.name === "textgate_session");
  check(session && session.httpOnly && session.sameSite === "Lax", `cookie ${JSON.stringify(session)}`);

  begin("the cookie never authorises the API");
  const apiStatus = await page.evaluate(async () => (await fetch("/api/v1/messages")).status);
  check(apiStatus === 401, `GET /api/v1/messages with the cookie answered ${apiStatus}`);

  begin("compose counts as the server does");
  await page.getByRole("link", { name: "Compose" }).click();
  await page.waitForURL(/\/compose$/);
  await page.getByLabel("To").fill("+15551230001, +15551230002");
  await page.getByLabel("Message").fill("Hello from the browser");
  await eventually("count of 22 GSM characters", async () =>
    (await page.locator("#count").innerText()).startsWith("22 characters · 1 part · GSM 7-bit"));
  await page.getByLabel("Message").fill("x".repeat(161));
  await eventually("161 characters in 2 parts", async () =>
    (await page.locator("#count").innerText()).startsWith("161 characters · 2 parts · GSM 7-bit"));
  await page.getByLabel("Message").fill("Zażółć gęślą jaźń");
  await eventually("UCS-2 and the characters that force it", async () => {
    const t = await page.locator("#count").innerText();
    return t.includes("Unicode (UCS-2)") && t.includes("because of") && t.includes("ż");
  });
  await page.getByLabel("Message").fill("Hello from the browser");
  await shot(page, "compose");
  await accessible(page, "/compose");

  begin("sending shows the messages, which become delivered live");
  await page.getByRole("button", { name: "Send" }).click();
  await page.waitForURL(/\/compose$/);
  await page.getByRole("status").waitFor();
  const rows = page.locator("table.live tbody tr");
  check((await rows.count()) === 2, `${await rows.count()} rows after sending to two numbers`);
  await eventually("both delivered", async () => {
    const cells = await page.locator("table.live .status").allInnerTexts();
    return cells.length === 2 && cells.every((c) => c === "Delivered");
  });
  const firstId = await rows.first().getAttribute("data-id");
  await shot(page, "compose-sent");

  begin("the outbox lists them and a message shows its timeline");
  await page.getByRole("link", { name: "Outbox" }).click();
  await page.waitForURL(/\/outbox$/);
  check((await page.locator("table.live tbody tr").count()) === 2, "two messages in the outbox");
  await shot(page, "outbox");
  await accessible(page, "/outbox");
  await page.getByLabel("Search").fill("5551230002");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/q=5551230002/);
  check((await page.locator("table.live tbody tr").count()) === 1, "a number's digits find its message");
  await page.getByLabel("Search").fill("FROM THE");
  await page.getByLabel("Device").selectOption("loopback");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/device=loopback/);
  check((await page.locator("table.live tbody tr").count()) === 2, "a piece of the text, any case, on a device");
  await page.getByLabel("From").fill("2001-01-01");
  await page.getByLabel("To").fill("2001-01-31");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/to=2001-01-31/);
  check((await page.locator("table.live tbody tr").count()) === 0, "nothing in another period");
  await page.goto("/outbox");
  await page.getByRole("link", { name: `#${firstId}` }).click();
  await page.waitForURL(new RegExp(`/outbox/${firstId}$`));
  const timeline = await page.locator("ol.timeline").innerText();
  check(timeline.includes("Accepted") && timeline.includes("Part 1 sent") && timeline.includes("Part 1 delivered"), `timeline: ${timeline}`);
  await shot(page, "message");
  await accessible(page, `/outbox/${firstId}`);

  begin("a bulk job: check shows the bad rows and the first texts, start follows it to the end");
  const csvPath = `${artifacts}/reminders.csv`;
  writeFileSync(csvPath, "number,name,due\n+15551240001,Ann,1 May\nnot-a-number,Bob,2 May\n+15551240003,Cy,3 May\n");
  await page.goto("/jobs");
  await page.getByRole("link", { name: "New bulk job" }).click();
  await page.waitForURL(/\/jobs\/new$/);
  await page.getByLabel("CSV file").setInputFiles(csvPath);
  await page.getByLabel("Text", { exact: true }).fill("Hi {{name}}, your payment is due on {{due}}.");
  await page.getByLabel("Name (optional)").fill("May reminders");
  await page.getByRole("button", { name: "Check" }).click();
  await eventually("the check's report", async () => (await page.locator("#report").innerText()).includes("2 text(s)"));
  const report = await page.locator("#report").innerText();
  check(/\b3\b/.test(report) && report.includes("Hi Ann, your payment is due on 1 May."), `report: ${report}`);
  check((await page.locator("#report table").first().innerText()).includes("3\t") || report.includes("\n3\t"), `the bad row's number (3) in: ${report}`);
  await shot(page, "bulk-check");
  await accessible(page, "/jobs/new (checked)");
  await page.getByRole("button", { name: "Start" }).click();
  await page.waitForURL(/\/jobs\/\d+$/);
  const jobUrl = page.url();
  await eventually("the job done", async () => (await page.locator("#job-state").innerText()) === "done", 20000);
  const jobText = await page.locator("#job").innerText();
  check(jobText.includes("delivered: 2"), `job: ${jobText}`);
  await shot(page, "bulk-job");
  await accessible(page, "/jobs/ID");
  const results = await page.evaluate(async (u) => (await fetch(`${u}/results.csv`)).text(), jobUrl);
  check(results.split("\n").filter((l) => l.trim()).length === 4 && results.includes("not-a-number"), `results: ${results}`);

  begin("the address book: add, import, group, send to the group, export");
  await page.getByRole("link", { name: "Contacts" }).click();
  await page.waitForURL(/\/contacts$/);
  await page.getByLabel("Name", { exact: true }).fill("Ann Example");
  await page.getByLabel("Number", { exact: true }).fill("+15551250001");
  await page.getByLabel(/Other fields/).fill("city: Oslo");
  await page.getByRole("button", { name: "Add contact" }).click();
  await page.waitForURL(/\/contacts$/);
  const contactsCsv = `${artifacts}/contacts.csv`;
  writeFileSync(contactsCsv, "name,number,city\nCy Import,+15551250003,Bergen\nBroken,not-a-number,\n");
  await page.getByLabel("CSV file").setInputFiles(contactsCsv);
  await page.getByRole("button", { name: "Import" }).click();
  await page.getByRole("status").waitFor();
  const imported = await page.getByRole("status").innerText();
  check(imported.includes("1 added") && imported.includes("row 3"), `import: ${imported}`);
  await page.getByLabel("Group name").fill("Team");
  await page.getByRole("button", { name: "Create group" }).click();
  await page.waitForURL(/\/contacts\/groups\/\d+$/);
  await page.goto("/contacts");
  await shot(page, "contacts");
  await accessible(page, "/contacts");
  await page.getByRole("link", { name: "Ann Example" }).click();
  await page.getByRole("button", { name: "Add to Team" }).click();
  await page.waitForURL(/\/contacts\/\d+$/);
  await shot(page, "contact");
  await accessible(page, "/contacts/ID");
  await page.goto("/contacts");
  await page.getByRole("link", { name: "Team" }).click();
  check((await page.locator("main table").innerText()).includes("+15551250001"), "Ann in the group");
  await shot(page, "group");
  await accessible(page, "/contacts/groups/ID");
  await page.getByRole("link", { name: "Send to this group" }).click();
  await page.waitForURL(/\/compose\?group=\d+$/);
  await page.getByLabel("Message").fill("Team meeting at 10");
  await page.getByRole("button", { name: "Send" }).click();
  await page.getByRole("status").waitFor();
  const teamRows = await page.locator("table.live tbody tr").allInnerTexts();
  check(teamRows.length === 1 && teamRows[0].includes("+15551250001"), `sent to the group: ${teamRows}`);
  await page.goto("/jobs/new");
  await page.getByLabel("Or a group of contacts").selectOption({ label: "Team (1)" });
  await page.getByLabel("Text", { exact: true }).fill("Hi {{name}} in {{city}}");
  await page.getByRole("button", { name: "Check" }).click();
  await eventually("a group's contacts as a job's rows", async () =>
    (await page.locator("#report").innerText()).includes("Hi Ann Example in Oslo"));
  const exported = await page.evaluate(async () => (await fetch("/contacts.csv")).text());
  check(exported.startsWith("name,number,city") && exported.includes("Ann Example,+15551250001,Oslo"), `export: ${exported}`);

  begin("a reply from the number reaches alice's inbox (a conversation), not bob's");
  const injected = await api("/api/v1/devices/loopback/inbound", {
    method: "POST",
    body: JSON.stringify({ from: "+15551230001", body: "Thanks, got it" }),
  });
  check(injected.status === 201 || injected.status === 202 || injected.status === 200, `inject answered ${injected.status} ${JSON.stringify(injected.body)}`);
  await eventually("an unread badge", async () => {
    await page.goto("/inbox");
    return (await page.locator("header .badge").count()) === 1;
  });
  check((await page.locator("tr.unread").count()) === 1, "one unread text");
  await shot(page, "inbox");
  await accessible(page, "/inbox");

  begin("the conversation shows both ways, and a reply goes out and is delivered");
  await page.getByRole("link", { name: "+15551230001" }).click();
  await page.waitForURL(/\/inbox\/(%2B|\+)15551230001$/);
  const bubbles = await page.locator("ol.conversation li .body").allInnerTexts();
  check(bubbles.join("|") === "Hello from the browser|Thanks, got it", `conversation: ${bubbles.join("|")}`);
  check((await page.locator("header .badge").count()) === 0, "opening it marks it read");
  await page.getByLabel("Reply").fill("You're welcome");
  await page.getByRole("button", { name: "Send reply" }).click();
  await eventually("the reply in the conversation, delivered", async () => {
    await page.reload();
    const last = page.locator("ol.conversation li").last();
    return (await last.locator(".body").innerText()) === "You're welcome" &&
      (await last.locator(".status").innerText()) === "Delivered";
  });
  await shot(page, "conversation");
  await accessible(page, "/inbox/+15551230001");

  begin("the dashboard shows today's texts and the chart");
  await page.getByRole("link", { name: "Dashboard" }).click();
  await page.waitForURL(`${base}/`);
  const dash = await page.locator("main").innerText();
  check(/Delivered\s+6/.test(dash), `dashboard: ${dash}`);
  check((await page.locator("svg.chart rect").count()) > 0, "bars in the chart");
  await shot(page, "dashboard");
  await accessible(page, "/");

  begin("a form with a wrong CSRF token, and one from another site, are refused");
  const forged = await page.evaluate(async () => {
    const r = await fetch("/compose", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: "csrf=forged&to=%2B15551230009&body=forged&nonce=x",
    });
    return r.status;
  });
  check(forged === 403, `a forged token answered ${forged}`);
  const crossSite = await fetch(`${base}/compose`, {
    method: "POST",
    redirect: "manual",
    headers: {
      "Content-Type": "application/x-www-form-urlencoded",
      Origin: "http://evil.example",
      Cookie: `textgate_session=${session.value}`,
    },
    body: "csrf=x&to=%2B15551230009&body=x&nonce=y",
  });
  check(crossSite.status === 403, `a cross-site post answered ${crossSite.status}`);

  begin("bob sees none of alice's texts, even through a guessed URL");
  const bob = await newUser();
  await signIn(bob.page, bobName, bobPw);
  await bob.page.waitForURL(`${base}/`);
  await bob.page.goto("/inbox");
  check((await bob.page.locator("tr.unread, table.list tbody tr").count()) === 0, "bob's inbox is empty");
  await bob.page.goto("/inbox/+15551230001");
  const bobBubbles = await bob.page.locator("ol.conversation li").count();
  check(bobBubbles === 0, `bob sees ${bobBubbles} texts of alice's conversation`);
  const bobMsg = await bob.page.goto(`/outbox/${firstId}`);
  check(bobMsg.status() === 404, `alice's message answered bob with ${bobMsg.status()}`);
  await bob.page.goto("/outbox");
  check((await bob.page.locator("table.live tbody tr").count()) === 0, "bob's outbox is empty");
  await bob.page.goto("/contacts");
  check(!(await bob.page.locator("main").innerText()).includes("Ann Example"), "bob does not see alice's contacts");
  const devicesForBob = await bob.page.goto("/devices");
  check(devicesForBob.status() === 404, `/devices answered a user with ${devicesForBob.status()}`);

  begin("an administrator sees everyone's messages and the devices");
  const admin = await newUser();
  await signIn(admin.page, adminName, adminPw);
  await admin.page.waitForURL(`${base}/`);
  await admin.page.getByRole("link", { name: "Outbox" }).click();
  check((await admin.page.locator("table.live tbody tr").count()) === 6, "six messages for the administrator");
  await admin.page.getByRole("link", { name: "Devices" }).click();
  await admin.page.waitForURL(/\/devices$/);
  check((await admin.page.locator("main").innerText()).includes("loopback"), "the loopback device listed");
  await admin.page.getByRole("button", { name: "Disable loopback" }).click();
  await admin.page.waitForURL(/\/devices$/);
  check((await admin.page.locator("main table").innerText()).includes("disabled"), "the device shown disabled");
  await admin.page.getByRole("button", { name: "Enable loopback" }).click();
  await admin.page.waitForURL(/\/devices$/);
  check(!(await admin.page.locator("main table").innerText()).includes("disabled"), "enabled again");
  await shot(admin.page, "devices");
  await accessible(admin.page, "/devices");
  await admin.page.goto("/jobs");
  await shot(admin.page, "jobs");
  await accessible(admin.page, "/jobs");

  begin("an administrator adds a user, whose shown-once password signs in");
  await admin.page.getByRole("link", { name: "Admin" }).click();
  await admin.page.waitForURL(/\/admin$/);
  await shot(admin.page, "admin-users");
  await accessible(admin.page, "/admin");
  await admin.page.getByLabel("User name").fill("dave");
  await admin.page.getByLabel("E-mail (optional)").fill("dave@example.com");
  await admin.page.getByRole("button", { name: "Add user" }).click();
  const davePw = await admin.page.locator("#secret").inputValue();
  check(davePw.length >= 8, `a generated password: ${davePw}`);
  await shot(admin.page, "admin-user-added");
  await accessible(admin.page, "user added");
  const dave = await newUser();
  await signIn(dave.page, "dave", davePw);
  await dave.page.waitForURL(`${base}/`);

  begin("an administrator's new API key works on the API, and stops when revoked");
  await admin.page.goto("/admin/keys");
  await admin.page.getByLabel("For user").selectOption("dave");
  await admin.page.getByRole("button", { name: "Create key" }).click();
  const daveKey = await admin.page.locator("#secret").inputValue();
  const send = async () => (await fetch(`${base}/api/v1/messages`, {
    method: "POST",
    headers: { Authorization: `Bearer ${daveKey}`, "Content-Type": "application/json" },
    body: JSON.stringify({ to: "+15551230005", body: "from dave's key" }),
  })).status;
  check((await send()) === 202, "dave's new key sends");
  await admin.page.goto("/admin/keys");
  await shot(admin.page, "admin-keys");
  await accessible(admin.page, "/admin/keys");
  await admin.page.locator("tr", { hasText: "dave" }).getByRole("button", { name: /Revoke/ }).click();
  await admin.page.waitForURL(/\/admin\/keys$/);
  check((await send()) === 401, "a revoked key is refused");

  begin("a user given senders chooses among them, and a message's timeline shows each attempt's device");
  await admin.page.goto("/admin");
  await admin.page.getByRole("link", { name: "dave" }).click();
  await admin.page.getByLabel("Senders").fill("ACME\n+1 555 000 1234");
  await admin.page.getByRole("button", { name: "Save" }).click();
  await admin.page.waitForURL(/\/admin\/users\/\d+$/);
  check((await admin.page.getByLabel("Senders").inputValue()) === "ACME\n+15550001234", "the senders kept in their normal form");
  await dave.page.goto("/compose");
  const options = await dave.page.locator("#from option").allInnerTexts();
  check(options.join(",") === "ACME,+15550001234", `the senders offered: ${options}`);
  await dave.page.getByLabel("To").fill("+15559990001");
  await dave.page.getByLabel("From").selectOption("+15550001234");
  await dave.page.getByLabel("Message").fill("through the flaky device first");
  await dave.page.getByRole("button", { name: "Send" }).click();
  await dave.page.getByRole("status").waitFor();
  const daveId = await dave.page.locator("table.live tbody tr").first().getAttribute("data-id");
  await eventually("delivered after a retry", async () =>
    (await dave.page.locator("table.live .status").allInnerTexts()).join() === "Delivered");
  await dave.page.goto(`/outbox/${daveId}`);
  const history = await dave.page.locator("ol.timeline").innerText();
  check(history.includes("Attempt 1 failed on device flaky") && history.includes("to device loopback"), `timeline: ${history}`);
  check((await dave.page.locator("main").innerText()).includes("+15550001234"), "sent as the chosen sender");
  await shot(dave.page, "message-retried");

  begin("a disabled user is signed out and cannot sign in");
  await admin.page.goto("/admin");
  await admin.page.getByRole("link", { name: "dave" }).click();
  await admin.page.getByLabel(/Disabled/).check();
  await admin.page.getByLabel("Texts a day (UTC)").fill("100");
  await admin.page.getByRole("button", { name: "Save" }).click();
  await admin.page.waitForURL(/\/admin\/users\/\d+$/);
  check(await admin.page.getByLabel("Texts a day (UTC)").inputValue() === "100", "dave's daily limit saved");
  await shot(admin.page, "admin-user");
  await accessible(admin.page, "/admin/users/ID");
  await dave.page.goto("/outbox");
  check(new URL(dave.page.url()).pathname === "/login", `a disabled user's session: ${dave.page.url()}`);
  await signIn(dave.page, "dave", davePw);
  await dave.page.getByRole("alert").waitFor();

  begin("the audit log shows who disabled dave and changed his limits");
  await admin.page.goto("/admin");
  await admin.page.getByRole("navigation", { name: "Administration" }).getByRole("link", { name: "Audit log" }).click();
  await admin.page.waitForURL(/\/admin\/audit$/);
  await admin.page.getByLabel("Action").selectOption("user.");
  await admin.page.getByRole("button", { name: "Show" }).click();
  await admin.page.waitForURL(/\/admin\/audit\?action=user\./);
  const audit = await admin.page.locator("table").innerText();
  check(/user\.disabled\s+dave\s+limits 100\/day/.test(audit), `the audit log: ${audit}`);
  check(!audit.includes("signin."), "the filter shows users' changes only");
  await shot(admin.page, "admin-audit");
  await accessible(admin.page, "/admin/audit");

  begin("the other administration pages show");
  for (const [path, name] of [["/admin/optout", "admin-optout"], ["/admin/deadletters", "admin-deadletters"], ["/admin/config", "admin-config"], ["/account", "account"]]) {
    const r = await admin.page.goto(path);
    check(r.status() === 200, `${path} answered ${r.status()}`);
    await shot(admin.page, name);
    await accessible(admin.page, path);
  }
  await admin.page.goto("/admin/optout");
  await admin.page.getByLabel("Number").fill("+15551230077");
  await admin.page.getByRole("button", { name: "Add" }).click();
  await admin.page.waitForURL(/\/admin\/optout$/);
  check((await admin.page.locator("main").innerText()).includes("+15551230077"), "the number on the list");
  // (bob's session ended with [auth] session_idle while the administrator worked)
  await signIn(bob.page, bobName, bobPw);
  await bob.page.waitForURL(`${base}/`);
  const bobAdmin = await bob.page.goto("/admin");
  check(bobAdmin.status() === 404, `/admin answered a user with ${bobAdmin.status()}`);

  begin("a phone-sized screen shows the outbox without sideways scrolling");
  const adminSession = (await admin.context.cookies()).find((c) => c.name === "textgate_session");
  const phone = await browser.newContext({ baseURL: base, viewport: { width: 375, height: 740 } });
  await phone.addCookies([{ ...adminSession }]);
  const p2 = await phone.newPage();
  await p2.goto("/outbox");
  check(new URL(p2.url()).pathname === "/outbox", `the phone is at ${p2.url()}`);
  const overflow = await p2.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the page is ${overflow}px wider than the screen`);
  await shot(p2, "outbox-phone");

  begin("signing out ends the session, on the server too");
  const carol = await newUser();
  await signIn(carol.page, aliceName, alicePw);
  await carol.page.waitForURL(`${base}/`);
  const fresh = (await carol.context.cookies()).find((c) => c.name === "textgate_session");
  const before = await fetch(`${base}/outbox`, { redirect: "manual", headers: { Cookie: `textgate_session=${fresh.value}` } });
  check(before.status === 200, `the live cookie answered ${before.status}`);
  await carol.page.getByRole("button", { name: "Sign out" }).click();
  await carol.page.waitForURL(/\/login$/);
  const replayed = await fetch(`${base}/outbox`, {
    redirect: "manual",
    headers: { Cookie: `textgate_session=${fresh.value}` },
  });
  check(replayed.status === 303 && replayed.headers.get("location").startsWith("/login"), `the old cookie answered ${replayed.status}`);

  begin("a session unused past [auth] session_idle has ended");
  await signIn(carol.page, aliceName, alicePw);
  await carol.page.waitForURL(`${base}/`);
  await new Promise((r) => setTimeout(r, Number(process.env.TG_IDLE_MS || 4000) + 1500));
  await carol.page.goto("/outbox");
  check(new URL(carol.page.url()).pathname === "/login", `after the idle time: ${carol.page.url()}`);

  check(consoleErrors.length === 0, `console errors: ${consoleErrors.join("; ")}`);
} catch (e) {
  failures.push(e.message);
}
await browser.close();
if (failures.length) {
  console.error(`FAILED: ${failures.join("\n")}`);
  process.exit(1);
}
console.log("browser tests passed");
