import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { slackEventsPath } from "../server/slack/slack-http.js";

const root = join(import.meta.dirname, "..");

describe("the Slack app manifest", () => {
  it("points interactivity at /slack/events and asks for every scope the gateway uses", () => {
    const manifest = parse(readFileSync(join(root, "docs/slack-app-manifest.yaml"), "utf8")) as {
      oauth_config: { scopes: { bot: string[] } };
      settings: { interactivity: { is_enabled: boolean; request_url: string } };
    };
    expect(manifest.settings.interactivity.is_enabled).toBe(true);
    expect(new URL(manifest.settings.interactivity.request_url).pathname).toBe(slackEventsPath);
    expect(manifest.oauth_config.scopes.bot.sort()).toEqual(
      [
        "channels:history",
        "chat:write",
        "groups:history",
        "im:history",
        "im:write",
        "usergroups:read",
        "users:read",
        "users:read.email",
      ].sort(),
    );
    const guide = readFileSync(join(root, "docs/slack.md"), "utf8");
    for (const scope of manifest.oauth_config.scopes.bot) expect(guide).toContain(`\`${scope}\``);
  });
});
