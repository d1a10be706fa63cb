/** Input limits; every one is enforced with INVALID_ARGUMENT naming the field. */
export const limits = {
  actionLength: 128,
  titleLength: 200,
  justificationLength: 4000,
  reasonLength: 1000,
  identityLength: 256,
  idempotencyKeyLength: 128,
  idLength: 64,
  originFieldLength: 512,
  links: 20,
  urlLength: 2048,
  /** Bytes of the canonical JSON of params. */
  paramsBytes: 64 * 1024,
  /** Nesting depth of params (the top-level object is depth 1). */
  paramsDepth: 16,
  /** Keys of any one object in params. */
  paramsKeys: 256,
  /** Length of any key in params: a name an approver can read. */
  paramsKeyLength: 256,
  /** Elements of any one list in params. */
  paramsListLength: 1000,
  /** Length of any string in params. */
  paramsStringLength: 16 * 1024,
  approverGroups: 100,
  /** Other identities of one approver (see SubmitDecision's approver_aliases). */
  approverAliases: 10,
} as const;
