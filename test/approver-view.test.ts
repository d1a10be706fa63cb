/**
 * What approvers see is exactly what is approved: through the real Slack rendering path (the fake Slack
 * Web API records every post), every param key (whatever its name) and every character (whatever it
 * is) reaches the approvers, long params are readable in full before a vote, and the CLI shows the same.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../gen/google/rpc/error_details_pb.js";
import { canonicalSha256 } from "../server/domain/hashing.js";
import type { JsonObject } from "../server/domain/types.js";
import { createTestPki, type TestPki, testIdentities } from "./support/certs.js";
import { type FakeSlackMessage, type SlackTestbed, startSlackTestbed } from "./support/fake-slack.js";
import { viewSubmissionPayload } from "./support/slack-signing.js";

const policy = `
version: 1
defaults: { channel: C0DEFAULT, timeout: 10m, unknown_action: deny }
policies:
  - name: visible-deploy
    match: "deploy.visible"
    channel: C0VIS
    approvers: { users: [U1, U2] }
    required_approvals: 2
    redaction: { mode: denylist, keys: [secret] }
    overrides:
      keys: ["__proto__", image]
      max_keys: 2
      max_diff_bytes: 200
  - name: must-fit
    match: "deploy.fit"
    channel: C0FIT
    approvers: { users: [U1] }
    params_must_fit: true
`;

let pki: TestPki;
let bed: SlackTestbed;

beforeAll(async () => {
  pki = createTestPki();
  bed = await startSlackTestbed({ pki, policy, flags: { deciders: testIdentities.decider } });
});
afterAll(async () => {
  await bed?.close();
});

/** Every text of a Slack message's blocks, as the Block Kit JSON Slack was sent. */
function blocksJson(m: { blocks: unknown[] }): string {
  return JSON.stringify(m.blocks);
}

/** The mrkdwn texts of a message's section blocks. */
function sectionTexts(m: { blocks: unknown[] }): string[] {
  return (m.blocks as { type: string; text?: { text: string } }[])
    .filter((b) => b.type === "section")
    .map((b) => b.text?.text ?? "");
}

/** The escape and bidi-override characters in a text, raw. */
const rawControls = (text: string) => [...text].filter((c) => c === "\u001b" || c === "\u202E");

const unescapeMrkdwn = (text: string) =>
  text.replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&");

/**
 * The params JSON an approver reads in these sections: the code blocks after "*Params:*" up to the
 * first section that is not a code block, joined and parsed.
 */
function paramsShown(sections: string[]): unknown {
  const start = sections.findIndex((s) => s.startsWith("*Params:*"));
  expect(start).toBeGreaterThanOrEqual(0);
  let text = "";
  for (let i = start; i < sections.length; i++) {
    const body = i === start ? (sections[i] ?? "").slice("*Params:*\n".length) : (sections[i] ?? "");
    const code = /^```([\s\S]*)```$/.exec(body);
    if (code === null) break;
    text += unescapeMrkdwn(code[1] ?? "");
  }
  return JSON.parse(text);
}

async function create(action: string, params: JsonObject, extra: Record<string, unknown> = {}) {
  const { approvals } = bed.ts.clients(pki.requester, "grpc");
  const { approval } = await approvals.createApproval({ action, title: "Deploy api", params, ...extra });
  if (approval === undefined) throw new Error("no approval");
  return approval;
}

const smuggled = () =>
  JSON.parse(
    '{"service":"api","__proto__":{"image":"attacker/backdoor"},"constructor":"ctor","prototype":[1],"secret":"s3cr3t"}',
  ) as JsonObject;

describe("what approvers see in Slack", () => {
  it("shows a param named __proto__ (or constructor, or prototype) like any other, and names the hidden ones", async () => {
    const params = smuggled();
    const approval = await create("deploy.visible", params);
    expect(approval.paramsSha256).toBe(canonicalSha256(params));
    const posted = await bed.waitForMessage(approval.id, () => true, "the approval message");
    const shown = paramsShown(sectionTexts(posted)) as Record<string, unknown>;
    expect(Object.keys(shown)).toEqual(["service", "__proto__", "constructor", "prototype"]);
    expect(Object.getOwnPropertyDescriptor(shown, "__proto__")?.value).toEqual({
      image: "attacker/backdoor",
    });
    expect(blocksJson(posted)).toContain("_Hidden by policy (1):_ `secret`");
    expect(blocksJson(posted)).not.toContain("s3cr3t");

    // "More info" shows the same, in full.
    await bed.click("U1", "countersign_info", approval.id);
    const info = await bed.slack.waitFor(
      () => bed.slack.ephemerals().find((e) => e.user === "U1" && e.text.includes("Details of")),
      "the More info answer",
    );
    expect(paramsShown(sectionTexts(info))).toEqual(shown);
  });

  it("shows bidirectional controls, zero-width and control characters in every field as escapes", async () => {
    const rlo = "\u202E";
    const approval = await create(
      "deploy.visible",
      { [`image${rlo}`]: `evil${rlo}gnp.exe`, note: "a\u200Bb\u0007c<!channel>" },
      {
        title: `Deploy ${rlo}lanigiro\u2066`,
        justification: `fix\u200D now\nsecond line <@U1>`,
        origin: { repo: `acme${rlo}/api`, links: [{ label: `log${rlo}s`, url: "https://ci.example/run/1" }] },
      },
    );
    const posted = await bed.waitForMessage(approval.id, () => true, "the approval message");
    const json = blocksJson(posted);
    for (const invisible of [rlo, "\u2066", "\u200B", "\u200D", "\u0007"])
      expect(json).not.toContain(invisible);
    const text = sectionTexts(posted).join("\n");
    expect((posted.blocks[0] as { text: { text: string } }).text.text).toBe(
      "🔐 Deploy \\u202Elanigiro\\u2066",
    );
    expect(text).toContain("repo `acme\\u202E/api`");
    expect(text).toContain("<https://ci.example/run/1|log\\u202Es>");
    expect(text).toContain(">fix\\u200D now\n>second line &lt;@U1&gt;");
    expect(text).toContain('"image\\u202E": "evil\\u202Egnp.exe"');
    expect(text).toContain('"note": "a\\u200Bb\\u0007c&lt;!channel&gt;"');
    expect(paramsShown(sectionTexts(posted))).toEqual({
      [`image${rlo}`]: `evil${rlo}gnp.exe`,
      note: "a\u200Bb\u0007c<!channel>",
    });
  });

  it("says plainly when params are shown only in part, and shows all of them on More info before a vote", async () => {
    const params: JsonObject = {};
    for (let i = 0; i < 90; i++) params[`key_${i}`] = `${"x<".repeat(300)}\u202E${i}`;
    const approval = await create("deploy.visible", params);
    const posted = await bed.waitForMessage(approval.id, () => true, "the approval message");
    const sections = sectionTexts(posted);
    expect(sections.join("\n")).toMatch(
      /This message shows only part of the params\* \(\d+ of \d+ characters\)\. Press \*More info\* to read all of them before you vote\./,
    );
    for (const s of sections) expect(s.length).toBeLessThanOrEqual(3000);

    await bed.click("U2", "countersign_info", approval.id);
    const pages = await bed.slack.waitFor(() => {
      const mine = bed.slack.ephemerals().filter((e) => e.user === "U2" && e.text.includes("Details of"));
      const count = /part \d+ of (\d+)/.exec(mine[0]?.text ?? "")?.[1] ?? "1";
      return mine.length > 0 && mine.length === Number(count) ? mine : undefined;
    }, "every page of More info");
    expect(pages.length).toBeGreaterThan(1);
    for (const page of pages) expect(page.blocks.length).toBeLessThanOrEqual(50);
    expect(paramsShown(pages.flatMap((p) => sectionTexts(p)))).toEqual(params);
  });

  it("refuses at create params that do not fit in full when the policy says they must", async () => {
    for (const protocol of ["grpc", "connect"] as const) {
      const { approvals } = bed.ts.clients(pki.requester, protocol);
      const long = { description: "y".repeat(3000) };
      const err = await approvals
        .createApproval({ action: "deploy.fit", title: "Too long", params: long })
        .then(() => undefined, ConnectError.from);
      expect(err?.code).toBe(Code.InvalidArgument);
      expect(err?.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations)).toEqual([
        expect.objectContaining({
          field: "params",
          description: expect.stringContaining('policy "must-fit" requires params that fit in full'),
        }),
      ]);
      const fits = await approvals.createApproval({
        action: "deploy.fit",
        title: "Fits",
        params: { a: "b" },
      });
      expect(fits.approval?.id).toMatch(/\w+/);
    }
  });

  it("shows the edit an approver made to a key named __proto__ exactly as it was applied", async () => {
    const params = JSON.parse('{"__proto__":{"image":"v1"},"image":"v1"}') as JsonObject;
    const approval = await create("deploy.visible", params);
    await bed.waitForMessage(approval.id, () => true, "the approval message");
    const opened = bed.slack.callsTo("views.open").length;
    await bed.click("U1", "countersign_edit", approval.id);
    const call = await bed.slack.waitFor(() => bed.slack.callsTo("views.open")[opened], "the edit modal");
    const view = (call.args.view ?? {}) as { blocks: { block_id?: string; label?: { text: string } }[] };
    const labels = view.blocks.filter((b) => b.label !== undefined).map((b) => [b.block_id, b.label?.text]);
    expect(labels).toEqual([
      ["param_0", "__proto__"],
      ["param_1", "image"],
      ["reason", "Reason"],
    ]);
    const result = await bed.interact(
      viewSubmissionPayload({
        user: "U1",
        view: (call.response?.view ?? {}) as Record<string, unknown>,
        values: { param_0: '{"image":"evil"}' },
      }),
    );
    expect(result.status).toBe(200);
    const { approvals } = bed.ts.clients(pki.requester, "grpc");
    await bed.waitForMessage(approval.id, (m) => blocksJson(m).includes("edited"), "the edit on the message");
    const edited = (await approvals.getApproval({ id: approval.id })).approval;
    if (edited === undefined) throw new Error("no approval");
    const applied = edited.edits[0];
    expect(applied?.changes.map((c) => c.key)).toEqual(["__proto__"]);
    expect(Object.getOwnPropertyDescriptor(edited.params, "__proto__")?.value).toEqual({ image: "evil" });
    expect(edited.paramsSha256).toBe(
      canonicalSha256(JSON.parse('{"__proto__":{"image":"evil"},"image":"v1"}') as JsonObject),
    );
    const updated = await bed.waitForMessage(
      approval.id,
      (m: FakeSlackMessage) => blocksJson(m).includes("edited"),
      "the edit on the message",
    );
    expect(sectionTexts(updated).join("\n")).toContain(
      'edited `__proto__` `{"image":"v1"}` → `{"image":"evil"}`',
    );
    expect(paramsShown(sectionTexts(updated))).toEqual(
      JSON.parse('{"__proto__":{"image":"evil"},"image":"v1"}'),
    );
  });
});

describe("what the CLI shows", () => {
  it("sends --param __proto__ as a param and prints control characters as escapes, never raw", async () => {
    const dir = mkdtempSync(join(tmpdir(), "countersign-view-"));
    const file = (name: string, content: string) => {
      writeFileSync(join(dir, name), content);
      return join(dir, name);
    };
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      COUNTERSIGN_URL: bed.ts.server.connectUrl,
      COUNTERSIGN_CA: file("ca.pem", pki.ca),
      COUNTERSIGN_CERT: file("cert.pem", pki.requester.cert),
      COUNTERSIGN_KEY: file("key.pem", pki.requester.key),
    };
    const cli = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          ["--import", "tsx", join(import.meta.dirname, "../clients/cli/countersign.ts"), ...args],
          { env, stdio: ["ignore", "pipe", "pipe"] },
        );
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (c: Buffer) => {
          stdout += c.toString();
        });
        child.stderr.on("data", (c: Buffer) => {
          stderr += c.toString();
        });
        child.on("close", (code) => resolve({ code, stdout, stderr }));
      });
    const clearScreen = "\u001b[2J\u001b[H";
    const created = await cli([
      "request",
      "--action",
      "deploy.visible",
      "--title",
      `ok${clearScreen}APPROVED\u202E`,
      "--param",
      "__proto__=smuggled",
      "--param",
      "service=api",
    ]);
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    const id = created.stdout.trim();
    const got = (await bed.ts.clients(pki.requester, "connect").approvals.getApproval({ id })).approval;
    expect(Object.keys(got?.params ?? {})).toEqual(["__proto__", "service"]);

    const text = await cli(["get", id]);
    expect(text.code).toBe(0);
    expect(rawControls(text.stdout)).toEqual([]);
    expect(text.stdout).toContain("title:         ok\\u001B[2J\\u001B[HAPPROVED\\u202E");
    expect(text.stdout).toContain('params:        {"__proto__":"smuggled","service":"api"}');
    const json = await cli(["get", id, "--output", "json"]);
    expect(rawControls(json.stdout)).toEqual([]);
    expect(JSON.parse(json.stdout).title).toBe(`ok${clearScreen}APPROVED\u202E`);
  });
});
