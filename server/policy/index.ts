/**
 * The policy module: loads, validates and compiles the policy file (SPEC C3), resolves the policy of an
 * action, and holds the set in force across reloads.
 *
 * @example
 * const holder = createPolicyHolder({ path: "examples/policies.yaml" });
 * const { policySet } = await holder.load();
 * const policy = resolvePolicy(policySet, "deploy.production.eu");
 */
export { durationHint, formatDuration, parseDuration } from "./duration.js";
export type {
  LoadedPolicies,
  PolicyHolder,
  PolicyHolderOptions,
  PolicyReloadEvent,
  PolicyReloadResult,
  PolicyReloadTrigger,
} from "./policy-holder.js";
export { createPolicyHolder, createStaticPolicyHolder } from "./policy-holder.js";
export type { PolicyDocumentResult, PolicyFileResult, PolicyProblem } from "./policy-loader.js";
export {
  compilePolicies,
  defaultMaxDiffBytes,
  defaultRerequestsPerDay,
  defaultTimeoutMs,
  loadPolicyFile,
  PolicyLoadError,
  parsePolicyDocument,
} from "./policy-loader.js";
export type { ActionGlob } from "./policy-match.js";
export { analyzeActionGlob, compileActionGlob, resolvePolicy } from "./policy-match.js";
export type {
  PolicyFileDefaults,
  PolicyFileDocument,
  PolicyFilePeople,
  PolicyFilePolicy,
  PolicyFileStage,
} from "./policy-schema.js";
export { policyFileSchema } from "./policy-schema.js";
