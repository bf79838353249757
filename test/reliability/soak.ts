/**
 * Soak (`npm run soak`, not part of CI): Nexxi as a process in front of the TGI-compatible server, under mixed
 * traffic for SOAK_MINUTES (10 by default) — whole replies, streams, continued conversations, clients that leave
 * mid-stream and bad requests — with its memory and open descriptors sampled every SOAK_SAMPLE_SECONDS. After a
 * warm-up (the first quarter), none of them may trend upwards: exit code 1 when one does.
 *
 * Uses DATABASE_URL / REDIS_URL when they are set (a database of its own, Redis under its own prefix), else the
 * embedded defaults.
 */
import { Effect, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import { call, metricValue, nexxiProcess, openDescriptors, residentBytes } from "../support/nexxi.js"
import { startTgi } from "../support/tgi.js"
import { startTraffic, tally } from "../support/traffic.js"

const minutes = Number(process.env.SOAK_MINUTES ?? 10)
const sampleSeconds = Number(process.env.SOAK_SAMPLE_SECONDS ?? 10)
/** Growth that counts as a trend over the measured part, per hour of traffic. */
const limits = { heapMbPerHour: 50, rssMbPerHour: 100, descriptorsPerHour: 50 }

interface Sample {
  readonly minute: number
  readonly rssMb: number
  readonly heapMb: number
  readonly descriptors: number
  readonly sockets: number
  readonly requests: number
}

/** Least-squares slope of y over x. */
const slope = (points: ReadonlyArray<readonly [number, number]>) => {
  const n = points.length
  const mx = points.reduce((sum, [x]) => sum + x, 0) / n
  const my = points.reduce((sum, [, y]) => sum + y, 0) / n
  const sxy = points.reduce((sum, [x, y]) => sum + (x - mx) * (y - my), 0)
  const sxx = points.reduce((sum, [x]) => sum + (x - mx) ** 2, 0)
  return sxx === 0 ? 0 : sxy / sxx
}

/** Clients that leave mid-stream, and requests that are refused: the paths where leaks like to hide. */
const chaos = (target: { readonly url: string }) =>
  Effect.promise(async () => {
    const controller = new AbortController()
    const stream = await call(target, "/v1/chat/stream", {
      method: "POST",
      json: { message: "a story I will not finish reading" },
      signal: controller.signal
    }).catch(() => undefined)
    await stream?.body
      ?.getReader()
      .read()
      .catch(() => undefined)
    controller.abort()
    await Promise.all([
      call(target, "/v1/chat", {
        method: "POST",
        body: '{"message": ',
        headers: { "content-type": "application/json" }
      }),
      call(target, "/v1/chat", { method: "POST", json: { message: "hi", unknown: true } }),
      call(target, `/v1/chat/session/${randomUUID()}`),
      call(target, "/v1/chat", { method: "POST", json: { message: "hi" }, key: "not-a-key" })
    ]).then(
      (responses) => Promise.all(responses.map((response) => response.text())),
      () => []
    )
  })

const program = Effect.gen(function* () {
  const tgi = yield* startTgi({ replyTokens: 60, tokensPerSecond: 400 })
  const sessionStore = process.env.REDIS_URL
    ? { REDIS_URL: process.env.REDIS_URL, REDIS_KEY_PREFIX: `nexxi-soak:${randomUUID()}:` }
    : // Sessions in memory fill their bound (10,000 by default) for longer than the soak lasts, which reads as a
      // trend: bounded lower, they are full before the warm-up ends, and only growth beyond the bound shows.
      { SESSION_MAX_SESSIONS: "500" }
  const nexxi = yield* nexxiProcess({ GENERATOR: "tgi", TGI_URL: tgi.url, LOG_LEVEL: "warn", ...sessionStore })
  const pid = nexxi.child.pid!
  console.log(
    `soak: ${minutes} min of mixed traffic against pid ${pid} (${nexxi.url}), a sample every ${sampleSeconds} s`
  )

  const traffic = yield* startTraffic(nexxi, { workers: 4, spacingMs: 20 })
  yield* Effect.forkScoped(chaos(nexxi).pipe(Effect.repeat(Schedule.spaced("300 millis"))))

  const samples: Array<Sample> = []
  const started = performance.now()
  const sample = Effect.gen(function* () {
    const fds = openDescriptors(pid)
    const next: Sample = {
      minute: (performance.now() - started) / 60_000,
      rssMb: residentBytes(pid) / 2 ** 20,
      heapMb: (yield* metricValue(nexxi, "nexxi_process_heap_used_bytes")) / 2 ** 20,
      descriptors: fds.total,
      sockets: fds.sockets,
      requests: traffic.outcomes.length
    }
    samples.push(next)
    console.log(
      `${next.minute.toFixed(1).padStart(5)} min  rss ${next.rssMb.toFixed(1).padStart(6)} MB  heap ` +
        `${next.heapMb.toFixed(1).padStart(6)} MB  fds ${String(next.descriptors).padStart(4)} (sockets ` +
        `${next.sockets})  requests ${next.requests}`
    )
  })
  yield* sample.pipe(
    Effect.repeat(Schedule.spaced(`${sampleSeconds} seconds`)),
    Effect.timeout(`${minutes} minutes`),
    Effect.ignore
  )
  yield* traffic.stop

  // The trend after the warm-up, per hour, of each window's floor: the heap saws up and down with garbage
  // collection, and what survives collections (the floor) is what would leak.
  const measured = samples.filter((s) => s.minute >= minutes / 4)
  const window = Math.max(3, Math.round(60 / sampleSeconds))
  const windows = Array.from({ length: Math.floor(measured.length / window) }, (_, i) =>
    measured.slice(i * window, (i + 1) * window)
  )
  const perHour = (pick: (s: Sample) => number) =>
    slope(windows.map((group) => [group[0]!.minute, Math.min(...group.map(pick))] as const)) * 60
  const trends = {
    heapMbPerHour: perHour((s) => s.heapMb),
    rssMbPerHour: perHour((s) => s.rssMb),
    descriptorsPerHour: perHour((s) => s.descriptors)
  }
  const failures = traffic.outcomes.filter((o) => o.status === 0 || o.status >= 500)
  console.log(`\nrequests: ${JSON.stringify(tally(traffic.outcomes))}`)
  console.log(`health probes failed: ${traffic.health.filter((probe) => !probe.ok).length} of ${traffic.health.length}`)
  console.log(
    `trend after warm-up: heap ${trends.heapMbPerHour.toFixed(1)} MB/h (limit ${limits.heapMbPerHour}), rss ` +
      `${trends.rssMbPerHour.toFixed(1)} MB/h (limit ${limits.rssMbPerHour}), descriptors ` +
      `${trends.descriptorsPerHour.toFixed(1)}/h (limit ${limits.descriptorsPerHour})`
  )
  const growing = (Object.keys(limits) as Array<keyof typeof limits>).filter((name) => trends[name] > limits[name])
  const ok = windows.length >= 2 && growing.length === 0 && failures.length === 0 && traffic.health.every((p) => p.ok)
  console.log(
    ok ? "soak: no growth trend, no failures" : `soak: FAILED ${growing.join(", ")} ${failures.length} failures`
  )
  return ok
})

const ok = await Effect.runPromise(Effect.scoped(program))
process.exit(ok ? 0 : 1)
