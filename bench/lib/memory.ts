/**
 * Memory with many open, idle streams: the upstream sends one token and then nothing (TGI's "stall"), so every
 * stream is open in Nexxi, with its upstream request, session lock and SSE response, and idle. Each round opens the
 * streams, measures, closes them all (Nexxi saves each as an interrupted turn), deletes their sessions (so the
 * round leaves no conversation behind), and measures again. Growth of the after-close figure across rounds would
 * be a leak.
 */
import { Agent, request } from "node:http"
import type { ProbeMemory } from "../probe.js"
import type { Nexxi, Upstream } from "./processes.js"
import { sleep } from "./stats.js"

export interface MemoryRound {
  readonly before: ProbeMemory
  readonly open: ProbeMemory
  readonly after: ProbeMemory
  readonly opened: number
  /** Seconds to open them all (50 clients at a time). */
  readonly openSeconds: number
}

/** Opens one stream and resolves, with its session id, once its first token arrived; `close` ends it. */
const openIdleStream = (nexxi: Nexxi, agent: Agent, key: string) =>
  new Promise<{ sessionId: string; close: () => void }>((resolve, reject) => {
    const body = JSON.stringify({ message: "Tell me a long story about a lighthouse keeper." })
    const req = request(`${nexxi.url}/v1/chat/stream`, {
      method: "POST",
      agent,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), "x-api-key": key }
    })
    req.on("error", reject)
    req.on("response", (res) => {
      if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`))
      let buffer = ""
      res.setEncoding("utf8")
      const onData = (chunk: string) => {
        buffer += chunk
        const match = /"session_id":"([0-9a-f-]+)"/.exec(buffer)
        if (!match) return
        res.off("data", onData)
        res.resume()
        resolve({ sessionId: match[1]!, close: () => req.destroy() })
      }
      res.on("data", onData)
      res.on("error", () => {})
    })
    req.end(body)
  })

const deleteSession = (nexxi: Nexxi, key: string, sessionId: string) =>
  fetch(`${nexxi.url}/v1/chat/session`, {
    method: "DELETE",
    headers: { "content-type": "application/json", "x-api-key": key },
    body: JSON.stringify({ session_id: sessionId })
  }).then(
    (response) => response.status,
    () => 0
  )

/** Runs `task` over `items`, `width` at a time. */
const pool = async <A, B>(items: ReadonlyArray<A>, width: number, task: (item: A) => Promise<B>) => {
  const results: Array<B> = []
  let next = 0
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const index = next++
        results[index] = await task(items[index]!)
      }
    })
  )
  return results
}

export const runMemory = async (options: {
  readonly nexxi: Nexxi
  readonly upstream: Upstream
  readonly key: string
  readonly streams: number
  /** Measured rounds; one more runs first as a warm-up. */
  readonly rounds: number
  readonly log: (line: string) => void
}): Promise<ReadonlyArray<MemoryRound>> => {
  const { nexxi, upstream, key, streams } = options
  await upstream.set({ fault: { kind: "stall", afterTokens: 1 }, keepAliveMs: 0 })
  const rounds: Array<MemoryRound> = []
  try {
    for (let round = 0; round <= options.rounds; round++) {
      const agent = new Agent({ keepAlive: false, maxSockets: Infinity })
      const before = await nexxi.memory()
      const openStart = performance.now()
      // Opened 50 at a time, as clients arriving, rather than 1000 in the same millisecond.
      // The warm-up round (JIT, pools, caches) needs fewer streams than the measured ones.
      const count = round === 0 ? Math.ceil(streams / 3) : streams
      const attempts = await pool(
        Array.from({ length: count }, (_, index) => index),
        50,
        () =>
          openIdleStream(nexxi, agent, key).catch((error: unknown) =>
            error instanceof Error ? error : new Error(String(error))
          )
      )
      const open = attempts.filter(
        (attempt): attempt is { sessionId: string; close: () => void } => !(attempt instanceof Error)
      )
      if (open.length < count) {
        const reasons = [...new Set(attempts.flatMap((attempt) => (attempt instanceof Error ? [attempt.message] : [])))]
        options.log(
          `  memory: ${count - open.length} stream(s) could not be opened (${reasons.slice(0, 3).join("; ")})`
        )
      }
      const openSeconds = (performance.now() - openStart) / 1000
      await sleep(500)
      const withStreams = await nexxi.memory()
      open.forEach((stream) => stream.close())
      // Nexxi sees each disconnect, aborts the upstream request and saves the interrupted turn.
      await sleep(1_500)
      const deleted = await pool(open, 32, (stream) => deleteSession(nexxi, key, stream.sessionId))
      const notDeleted = deleted.filter((status) => status !== 204).length
      if (notDeleted > 0) options.log(`  memory: ${notDeleted} session(s) could not be deleted`)
      await sleep(500)
      const after = await nexxi.memory()
      agent.destroy()
      if (round > 0) rounds.push({ before, open: withStreams, after, opened: open.length, openSeconds })
      options.log(
        `  memory round ${round === 0 ? "0 (warm-up)" : round}: rss ${mb(before.rss)} → ${mb(withStreams.rss)} with ` +
          `${open.length} open (in ${openSeconds.toFixed(1)} s) → ${mb(after.rss)} after; heap ${mb(before.heapUsed)} → ${mb(withStreams.heapUsed)} → ` +
          `${mb(after.heapUsed)}`
      )
    }
  } finally {
    await upstream.set({ fault: undefined, keepAliveMs: 15_000 })
  }
  return rounds
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`
