// No password from a URL reaches a message: the pure rule, and the two places every message passes through.
import { describe, expect, it } from "vitest";
import { KataError } from "../../src/errors.ts";
import { FetchError } from "../../src/fetch/http.ts";
import { createLogger } from "../../src/log/logger.ts";
import { redactCredentials } from "../../src/redact.ts";

describe("redactCredentials", () => {
  it.each([
    ["http://user:pass@host/x/", "http://***@host/x/"],
    ["https://TOKEN@mirror.example:8443/ext/", "https://***@mirror.example:8443/ext/"],
    [
      "fetch of https://a:b@h/SHA256SUMS failed, then https://c:d@h2/",
      "fetch of https://***@h/SHA256SUMS failed, then https://***@h2/",
    ],
    ['got "http://u:p%40ss@h/"', 'got "http://***@h/"'],
    ["http://host/path@not-userinfo", "http://host/path@not-userinfo"],
    ["mail root@localhost", "mail root@localhost"],
    ["https://extensions.flatcar.org/extensions/", "https://extensions.flatcar.org/extensions/"],
  ])("%j", (text, expected) => {
    expect(redactCredentials(text)).toBe(expected);
  });
});

it("a KataError keeps no password in its message or remedy", () => {
  const error = new KataError("fetch-failed", "http://u:secret@h/: refused", { remedy: "check http://u:secret@h/" });
  expect(error.message).toBe("http://***@h/: refused");
  expect(error.remedy).toBe("check http://***@h/");
  expect(new FetchError("redirect", "http://u:secret@h/", "loop").url).toBe("http://***@h/");
});

it("the logger keeps no password in a record's message or fields", () => {
  const records: string[] = [];
  const log = createLogger((level, message, fields) => records.push(`${level} ${message} ${JSON.stringify(fields)}`));
  log
    .with({ SOURCE: "https://u:secret@h/" })
    .warning("redirected to http://x:secret@y/", { URL: "http://a:secret@b/" });
  expect(records).toHaveLength(1);
  expect(records[0]).not.toContain("secret");
  expect(records[0]).toContain("http://***@y/");
});
