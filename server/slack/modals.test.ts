import { describe, expect, it } from "vitest";
import type { Approval } from "../domain/types.js";
import { editModal, modalErrors, parseModalContext, readEditSubmission } from "./modals.js";

function approval(): Approval {
  return {
    id: "01TEST",
    action: "deploy.staging",
    title: "t",
    justification: "",
    params: { version: "v1", replicas: 2, limits: { cpu: 1 }, token: "hidden" },
    paramsSha256: "0".repeat(64),
    requester: "ci",
    onBehalfOf: "",
    origin: { repo: "", branch: "", pullRequest: "", runId: "", links: [] },
    policyName: "p",
    policySha256: "0".repeat(64),
    rules: {
      name: "p",
      channel: "C1",
      dm: false,
      approvers: { users: ["U1"], groups: [] },
      superApprovers: [],
      requiredApprovals: 1,
      denyThreshold: 1,
      denyReasonRequired: false,
      stages: [],
      timeoutMs: 60_000,
      remindersMs: [],
      redaction: { mode: "denylist", keys: ["token"] },
      overrides: {
        keys: ["version", "replicas", "limits", "note", "token"],
        maxKeys: 2,
        maxDiffBytes: 64,
        schema: { type: "object", properties: { note: { type: "string" } } },
        requestKeys: [],
      },
      rerequest: { allowed: false, cooldownMs: 0, maxPerDay: 0 },
    },
    state: "pending",
    votes: [],
    stages: [],
    edits: [],
    createTime: 0,
    expireTime: 60_000,
    decideTime: 0,
    decidedBy: "",
    reason: "",
    adminOverride: false,
    lineageId: "01TEST",
    rerequestOf: "",
    overrides: {},
    version: 1,
  };
}

const values = (v: Record<string, string | null>) =>
  Object.fromEntries(Object.entries(v).map(([block, value]) => [block, { value: { value } }]));

describe("the edit modal", () => {
  it("prefills text as text and other values as JSON, but never a hidden one", () => {
    const view = editModal(approval(), { approvalId: "01TEST", channel: "C1" });
    const inputs = (view.blocks as { type: string; element?: { initial_value?: string } }[])
      .filter((b) => b.type === "input")
      .map((b) => b.element?.initial_value);
    expect(inputs).toEqual(["v1", "2", '{"cpu":1}', undefined, undefined, undefined]);
    expect(parseModalContext(view.private_metadata ?? "")).toEqual({ approvalId: "01TEST", channel: "C1" });
    expect(parseModalContext("not json")).toBeUndefined();
  });

  it("reads text as text, the rest as JSON, and keeps empty fields as they were", () => {
    const read = readEditSubmission(
      approval(),
      values({ param_0: "v2", param_1: "3", param_2: null, param_3: "42", param_4: "" }),
    );
    expect(read).toEqual({
      ok: true,
      editedParams: { version: "v2", replicas: 3, limits: { cpu: 1 }, token: "hidden", note: "42" },
    });
    expect(readEditSubmission(approval(), values({ param_1: "three" }))).toEqual({
      ok: false,
      errors: { param_1: 'is not a JSON value (e.g. 42, true, "text" or [1, 2])' },
    });
  });

  it("puts each field violation next to its input", () => {
    expect(
      modalErrors(approval(), "edit", [
        { field: "edited_params.replicas", description: "must be <= 10" },
        { field: "edited_params.limits.cpu", description: "must be integer" },
        { field: "edited_params", description: "changes 3 keys; the policy allows at most 2" },
        { field: "edited_params.service", description: "may not be edited" },
        { field: "reason", description: "is too long" },
      ]),
    ).toEqual({
      param_1: "must be <= 10",
      param_2: "edited_params.limits.cpu: must be integer",
      param_0:
        "edited_params: changes 3 keys; the policy allows at most 2; edited_params.service: may not be edited",
      reason: "is too long",
    });
    expect(modalErrors(approval(), "deny", [{ field: "reason", description: "is required" }])).toEqual({
      reason: "is required",
    });
  });
});
