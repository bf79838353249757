import { randomBytes } from "node:crypto"
import { Agent, request } from "node:http"
import { mkdtempSync, readdirSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort, startNexxi, startUpstream } from "./lib/processes.js"

const work = mkdtempSync(join(tmpdir(), "nexxi-heap-"))
const key = `bench_${randomBytes(24).toString("hex")}`
const upstream = await startUpstream()
const nexxi = await startNexxi({ port: await freePort(), env: { NODE_OPTIONS: "--heapsnapshot-signal=SIGUSR2", API_KEY: key, GENERATOR: "tgi", TGI_URL: upstream.url, DATA_DIR: join(work, "data"), RATE_LIMIT_RPM: "0", RATE_LIMIT_TPM: "0", RATE_LIMIT_CONCURRENCY: "0", GENERATOR_IDLE_TIMEOUT_MS: "600000" }, logFile: join(work, "nexxi.log") })
await upstream.set({ fault: { kind: "stall", afterTokens: 1 }, keepAliveMs: 0 } as any)
const agent = new Agent({ keepAlive: true, maxSockets: Infinity })
const open = () => new Promise<() => void>((resolve, reject) => {
  const body = JSON.stringify({ message: "Tell me a long story about a lighthouse keeper." })
  const req = request(`${nexxi.url}/v1/chat/stream`, { method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), "x-api-key": key } })
  req.on("error", reject)
  req.on("response", (res) => { res.once("data", () => resolve(() => req.destroy())); res.on("error", () => {}) })
  req.end(body)
})
const snapshot = async (n: number) => {
  const before = new Set(readdirSync(process.cwd()).filter((f) => f.endsWith(".heapsnapshot")))
  await nexxi.memory()
  process.kill(nexxi.pid, "SIGUSR2")
  for (;;) { await new Promise((r) => setTimeout(r, 500)); const f = readdirSync(process.cwd()).find((f) => f.endsWith(".heapsnapshot") && !before.has(f)); if (f) { await new Promise((r) => setTimeout(r, 3000)); return f } }
}
const closers: Array<() => void> = []
for (let i = 0; i < 20; i++) closers.push(await open())
const a = await snapshot(0)
for (let i = 0; i < 300; i++) closers.push(await open())
const b = await snapshot(1)
console.log(a, b)
closers.forEach((c) => c())
await nexxi.stop(); await upstream.stop()
