// Runs one downloadImage in its own process so a test can SIGKILL it mid-download.
// argv: <url> <dest> <tmpDir> <sha256>
import { systemClock, systemRandom } from "../../../src/clock.ts";
import { downloadImage } from "../../../src/fetch/download.ts";
import { createLogger, stderrSink } from "../../../src/log/logger.ts";

const [url, dest, tmpDir, sha256] = process.argv.slice(2);
if (url === undefined || dest === undefined || tmpDir === undefined || sha256 === undefined) {
  process.stderr.write("usage: download-child.ts URL DEST TMPDIR SHA256\n");
  process.exit(2);
}
await downloadImage({
  url,
  dest,
  tmpDir,
  expectedSha256: sha256,
  maxBytes: 1 << 30,
  connectTimeoutMs: 5000,
  idleTimeoutMs: 60_000,
  retries: 0,
  clock: systemClock,
  random: systemRandom,
  log: createLogger(stderrSink(), "debug"),
});
