import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { jsonDisplay, paramsDisplay, truncate, visibleText } from "./display-text.js";
import { canonicalJson } from "./hashing.js";
import type { JsonObject } from "./types.js";

/** Characters that display as nothing, or change how the text around them displays. */
const deceptive = [
  "\u202A",
  "\u202B",
  "\u202C",
  "\u202D",
  "\u202E",
  "\u2066",
  "\u2067",
  "\u2068",
  "\u2069",
  "\u200B",
  "\u200C",
  "\u200D",
  "\u2060",
  "\uFEFF",
  "\u00AD",
  "\u0000",
  "\u0007",
  "\u001B",
  "\u007F",
  "\u0085",
  "\u009B",
  "\u00A0",
  "\u2028",
  "\u2029",
  "\u3164",
  "\u2800",
  "\uD800",
  "\uDFFF",
  "\u{E0041}",
  "\u{F0000}",
];

describe("visibleText", () => {
  it("shows every invisible or layout-changing character as a \\u escape", () => {
    for (const c of deceptive) {
      const shown = visibleText(`a${c}b`);
      expect(shown).toMatch(/^a(\\u[0-9A-F]{4})+b$/);
      expect(JSON.parse(`"${shown}"`)).toBe(`a${c}b`);
    }
    expect(visibleText("evil\u202Egnp.exe")).toBe("evil\\u202Egnp.exe");
    expect(visibleText("tag\u{E0041}")).toBe("tag\\uDB40\\uDC41");
  });

  it("keeps ordinary text, spaces, emoji and emoji sequences as they are", () => {
    const ordinary = "Déploiement 部署 деплой 🚀 ❤️ 👩‍💻 1️⃣ 🇫🇷 a b";
    expect(visibleText(ordinary)).toBe(ordinary);
  });

  it("shows line breaks and tabs in single-line text, and keeps line breaks in multi-line text", () => {
    expect(visibleText("a\nb\tc")).toBe("a\\u000Ab\\u0009c");
    expect(visibleText("a\nb\tc", { multiline: true })).toBe("a\nb\\u0009c");
  });

  it("leaves no invisible character in any text", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.oneof(fc.constantFrom(...deceptive), fc.string({ unit: "binary" })) }),
        (text) => {
          const shown = visibleText(text);
          expect(shown).not.toMatch(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}\p{Cs}]/u);
          expect(shown).not.toMatch(/\p{Cs}/u);
        },
      ),
    );
  });
});

describe("truncate", () => {
  it("cuts between whole characters, never inside an emoji or a surrogate pair", () => {
    expect(truncate("ab😀cd", 4)).toBe("ab…");
    expect(truncate("ab👩‍💻cd", 5)).toBe("ab…");
    expect(truncate("abc", 3)).toBe("abc");
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), fc.integer({ min: 1, max: 40 }), (text, max) => {
        const cut = truncate(text, max);
        expect(cut.length).toBeLessThanOrEqual(Math.max(max, 1));
        expect(cut).not.toMatch(/\p{Cs}/u);
        if (cut !== text) expect(text.startsWith(cut.slice(0, -1))).toBe(true);
      }),
    );
  });
});

describe("jsonDisplay and paramsDisplay", () => {
  it("is JSON that parses back to exactly the value, with no invisible character and no backtick", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const shown = jsonDisplay(value as JsonObject, 2);
        expect(shown).not.toMatch(/[`\p{Cf}\p{Cs}]/u);
        expect(canonicalJson(JSON.parse(shown))).toBe(canonicalJson(value as JsonObject));
      }),
    );
  });

  it("treats __proto__, constructor and prototype as ordinary keys, shown or hidden by name", () => {
    const params = JSON.parse(
      '{"service":"api","__proto__":{"image":"attacker/backdoor"},"constructor":1,"prototype":2}',
    ) as JsonObject;
    const all = paramsDisplay(params, { mode: "none", keys: [] });
    expect(Object.keys(all.shown)).toEqual(["service", "__proto__", "constructor", "prototype"]);
    expect(all.text).toContain('"__proto__": {\n    "image": "attacker/backdoor"\n  }');
    const some = paramsDisplay(params, { mode: "denylist", keys: ["__proto__", "constructor"] });
    expect(Object.keys(some.shown)).toEqual(["service", "prototype"]);
    expect(some.hidden).toEqual(["__proto__", "constructor"]);
    expect(paramsDisplay(params, { mode: "allowlist", keys: ["constructor"] }).hidden).toEqual([
      "service",
      "__proto__",
      "prototype",
    ]);
  });
});
