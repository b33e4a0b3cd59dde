// sd_notify through the real systemd-notify binary, received on a real AF_UNIX datagram socket (Python's socket
// module plays the service manager: Node cannot bind a unix datagram socket). The receiver closes the fds that
// come with BARRIER=1 the way systemd does, so systemd-notify's wait for the manager completes.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { createLogger } from "../../../src/log/logger.ts";
import { createNotifier } from "../../../src/systemd/notify.ts";
import { type Inbox, inbox } from "../../helpers/dbus.ts";

const RECEIVER = `
import array, json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"listening": True}), flush=True)
while True:
    data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(64) + socket.CMSG_SPACE(12))
    fds, pid = [], None
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i"); a.frombytes(payload[: len(payload) - len(payload) % 4]); fds.extend(a)
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = int.from_bytes(payload[0:4], "little")
    for fd in fds:
        os.close(fd)
    print(json.dumps({"text": data.decode(), "pid": pid, "fds": len(fds)}), flush=True)
`;

interface Datagram {
  text: string;
  pid: number | null;
  fds: number;
}

let dir: string;
let receiver: ChildProcess;
let datagrams: Inbox<Datagram>;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "kata-notify-"));
  datagrams = inbox<Datagram>();
  receiver = spawn("python3", ["-c", RECEIVER, join(dir, "notify.sock")], { stdio: ["ignore", "pipe", "inherit"] });
  const listening = inbox<true>();
  let buffered = "";
  receiver.stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      const line = JSON.parse(buffered.slice(0, nl)) as Datagram | { listening: true };
      buffered = buffered.slice(nl + 1);
      if ("listening" in line) listening.push(true);
      else if (line.text !== "BARRIER=1") datagrams.push(line);
    }
  });
  await listening.next("the receiver to bind");
});

afterEach(async () => {
  receiver.kill("SIGKILL");
  await rm(dir, { recursive: true, force: true });
});

it("sends READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 in order, attributed to our own PID", async () => {
  const warnings: string[] = [];
  const notifier = createNotifier({
    log: createLogger((level, message) => warnings.push(`${level}: ${message}`)),
    env: { ...process.env, NOTIFY_SOCKET: join(dir, "notify.sock") },
  });
  expect(notifier.enabled).toBe(true);

  // Fired without awaiting in between: the notifier keeps them in order.
  const sent = [
    notifier.ready("listening on 127.0.0.1:8720"),
    notifier.status("fetching kata-containers 3.32.0\nfrom the bakery"),
    notifier.watchdog(),
    notifier.stopping(),
  ];
  await Promise.all(sent);

  const texts: string[] = [];
  for (let i = 0; i < 4; i++) {
    const d = await datagrams.next(`datagram ${i + 1}`);
    expect(d.pid).toBe(process.pid);
    texts.push(d.text);
  }
  expect(texts[0]?.split("\n")).toContain("READY=1");
  expect(texts[0]?.split("\n")).toContain("STATUS=listening on 127.0.0.1:8720");
  expect(texts[1]?.split("\n")).toContain("STATUS=fetching kata-containers 3.32.0 from the bakery");
  expect(texts[2]?.split("\n")).toContain("WATCHDOG=1");
  expect(texts[3]?.split("\n")).toContain("STOPPING=1");
  expect(warnings).toEqual([]);
});
