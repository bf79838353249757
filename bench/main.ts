/**
 * `npm run bench`: what Nexxi adds on top of the model server, measured side by side with the direct path and with a
 * bare pass-through proxy (the floor of any gateway), all on loopback, in one run. See "Benchmarks" in README.md.
 *
 *   npm run bench -- --quick                 about a minute and a half; every figure, fewer and shorter runs
 *   npm run bench -- --duration 10 --connections 1,16,64 --streams 1,100,1000 --token-rate 20 --repeats 3
 *   npm run bench -- --cpu-prof              also writes CPU profiles of Nexxi under load (whole replies, streams)
 *                                            and prints their hottest functions
 *
 * Writes `<out>/latest.json`, `latest.md`, `latest.svg` (and a timestamped copy of the JSON); `--out` (default
 * bench/results). With REDIS_URL / DATABASE_URL set, Nexxi uses them instead of its embedded stores.
 */
import { randomBytes } from "node:crypto"
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { Agent } from "node:http"
import { cpus, freemem, loadavg, platform, release, tmpdir, totalmem } from "node:os"
import { join, resolve } from "node:path"
import { parseArgs } from "node:util"
import { format, resolveConfig } from "prettier"
import { runMemory } from "./lib/memory.js"
import { runNonStream, type NonStreamRun, type Target } from "./lib/nonstream.js"
import {
  cpuSeconds,
  freePort,
  root,
  rssBytes,
  startBare,
  startNexxi,
  startUpstream,
  type Child,
  type Nexxi
} from "./lib/processes.js"
import { summarizeProfile } from "./lib/profile.js"
import { markdownReport, svgChart, targetsOf, type BenchResult, type StreamResult } from "./lib/report.js"
import { runSafetyCost } from "./lib/safetycost.js"
import { round, roundSpread, spread } from "./lib/stats.js"
import { oneStream, runStreams, type StreamRun, type StreamTarget } from "./lib/stream.js"
import { upstreamRequestBody } from "./lib/upstream-request.js"

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    duration: { type: "string" },
    connections: { type: "string" },
    streams: { type: "string" },
    "token-rate": { type: "string" },
    tokens: { type: "string" },
    repeats: { type: "string" },
    "memory-streams": { type: "string" },
    out: { type: "string" },
    "cpu-prof": { type: "boolean", default: false },
    help: { type: "boolean", default: false }
  }
})

if (args.help) {
  console.log(`npm run bench -- [options]
  --quick              short runs, 2 repeats: every figure in under two minutes
  --duration <s>       seconds per measured run (default 10; quick 1.5)
  --connections <list> concurrencies of whole replies (default 1,16,64)
  --streams <list>     concurrent streams (default 1,100,1000)
  --token-rate <n>     tokens per second of each upstream stream (default 20)
  --tokens <n>         tokens per streamed reply (default 40; quick 12)
  --repeats <n>        runs of each configuration (default 3; quick 2)
  --memory-streams <n> open idle streams for the memory figure (default 1000)
  --out <dir>          where results go (default bench/results)
  --cpu-prof           profile Nexxi under load (start-up excluded) and print its hottest functions`)
  process.exit(0)
}

const list = (raw: string | undefined, fallback: ReadonlyArray<number>) =>
  raw === undefined ? fallback : raw.split(",").map((item) => Number(item.trim()))
const quick = args.quick ?? false
const options = {
  quick,
  durationS: Number(args.duration ?? (quick ? 1 : 10)),
  connections: list(args.connections, [1, 16, 64]),
  streams: list(args.streams, [1, 100, 1000]),
  tokenRate: Number(args["token-rate"] ?? 20),
  tokens: Number(args.tokens ?? (quick ? 10 : 40)),
  repeats: Number(args.repeats ?? (quick ? 2 : 3)),
  memoryStreams: Number(args["memory-streams"] ?? (quick ? 300 : 1000)),
  memoryRounds: quick ? 2 : 4,
  out: resolve(args.out ?? join(root, "bench/results")),
  cpuProf: args["cpu-prof"] ?? false
}

const SYSTEM_PROMPT = "You are Nexxi, a helpful, accurate and concise assistant."
const MAX_NEW_TOKENS = 512
const MESSAGE = "Hello Nexxi! Could you suggest a quiet place for a weekend walk near the sea?"
/** Upstream reply of the whole-reply runs, generated as fast as the server can (no pacing). */
const FAST_REPLY_TOKENS = 32

const log = (line: string) => console.log(line)
const began = Date.now()
const elapsed = () => `${((Date.now() - began) / 1000).toFixed(0)}s`

const machine = () => ({
  cpu: cpus()[0]?.model ?? "unknown",
  cores: cpus().length,
  node: process.version,
  os: `${platform()} ${release()}`,
  memory_gb: round(totalmem() / 2 ** 30, 1),
  free_memory_gb_at_start: round(freemem() / 2 ** 30, 1),
  load_average_at_start: loadavg().map((value) => round(value, 2))
})

const main = async () => {
  const startMachine = machine()
  log(
    `nexxi bench (${quick ? "quick" : "full"}): ${startMachine.cpu}, ${startMachine.cores} cores, node ${process.version}`
  )
  log(`  load average ${startMachine.load_average_at_start.join(" ")}: other work on the machine makes figures noisy`)
  const work = mkdtempSync(join(tmpdir(), "nexxi-bench-"))
  const profileDir = options.cpuProf ? join(work, "profiles") : undefined
  if (profileDir !== undefined) mkdirSync(profileDir)
  const key = `bench_${randomBytes(24).toString("hex")}`
  const children: Array<Child> = []
  try {
    const upstream = await startUpstream()
    children.push(upstream)
    const bare = await startBare(upstream.url, SYSTEM_PROMPT, MAX_NEW_TOKENS)
    children.push(bare)
    const nexxiEnv: Record<string, string> = {
      API_KEY: key,
      GENERATOR: "tgi",
      TGI_URL: upstream.url,
      DATA_DIR: join(work, "data"),
      SYSTEM_PROMPT,
      MAX_NEW_TOKENS: String(MAX_NEW_TOKENS),
      // Limits would refuse the benchmark's load by design: they are checked, with no limit set.
      RATE_LIMIT_RPM: "0",
      RATE_LIMIT_TPM: "0",
      RATE_LIMIT_CONCURRENCY: "0",
      // Idle streams of the memory figure stay open longer than the default 30 s would allow.
      GENERATOR_IDLE_TIMEOUT_MS: "600000",
      ...(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}),
      ...(process.env.DATABASE_URL ? { DATABASE_URL: process.env.DATABASE_URL } : {})
    }
    const nexxi: Nexxi = await startNexxi({
      port: await freePort(),
      env: nexxiEnv,
      logFile: join(work, "nexxi.log")
    })
    children.push(nexxi)
    const stores = {
      session: process.env.REDIS_URL ? "redis" : "memory (embedded)",
      storage: process.env.DATABASE_URL ? "postgres" : "pglite (embedded)"
    }
    log(
      `  started upstream, bare proxy and Nexxi (sessions: ${stores.session}, storage: ${stores.storage}) in ${elapsed()}`
    )

    // ----- 1. whole replies -----------------------------------------------------------------------------------
    await upstream.set({ tokensPerSecond: 0, firstTokenDelayMs: 0, replyTokens: FAST_REPLY_TOKENS })
    const upstreamBody = upstreamRequestBody(SYSTEM_PROMPT, MESSAGE, MAX_NEW_TOKENS)
    const nexxiBody = JSON.stringify({ message: MESSAGE })
    const targets: ReadonlyArray<Target> = [
      { name: "direct", url: `${upstream.url}/v1/chat/completions`, headers: {}, body: upstreamBody },
      { name: "bare", url: `${bare.url}/v1/chat`, headers: {}, body: nexxiBody },
      { name: "nexxi", url: `${nexxi.url}/v1/chat`, headers: { "x-api-key": key }, body: nexxiBody }
    ]
    log(
      `\n1. whole replies (POST /v1/chat, ${FAST_REPLY_TOKENS}-token instant reply), ${options.repeats} × ${options.durationS} s per configuration`
    )
    const warmupS = quick ? 1 : 5
    for (const target of targets) await runNonStream(target, 16, warmupS)
    if (profileDir !== undefined) await nexxi.startProfile()
    const nonstreamRuns: Record<string, Record<number, Array<NonStreamRun>>> = { direct: {}, bare: {}, nexxi: {} }
    const nexxiCpuByConnections: Record<number, Array<number>> = {}
    for (const connections of options.connections) {
      for (let repeat = 0; repeat < options.repeats; repeat++) {
        // Interleaved, so that drift in the machine's load touches every target alike.
        for (const target of targets) {
          const cpuBefore = cpuSeconds(nexxi.pid)
          const run = await runNonStream(target, connections, options.durationS)
          if (target.name === "nexxi")
            (nexxiCpuByConnections[connections] ??= []).push(
              ((cpuSeconds(nexxi.pid) - cpuBefore) / Math.max(1, run.requests)) * 1000
            )
          ;(nonstreamRuns[target.name]![connections] ??= []).push(run)
          if (run.failures > 0) log(`  ${target.name} c=${connections}: ${run.failures} failed request(s)`)
        }
      }
      const line = targets
        .map((target) => {
          const runs = nonstreamRuns[target.name]![connections]!
          const med = (pick: (run: NonStreamRun) => number) => spread(runs.map(pick)).median
          return `${target.name} ${med((r) => r.rps).toFixed(0)} rps p50 ${med((r) => r.p50_ms).toFixed(2)} p99 ${med((r) => r.p99_ms).toFixed(2)} ms`
        })
        .join(" | ")
      log(`  c=${connections}: ${line}  (${elapsed()})`)
    }

    if (profileDir !== undefined) await nexxi.stopProfile(join(profileDir, "whole-replies.cpuprofile"))

    // ----- 2. streams ---------------------------------------------------------------------------------------
    await upstream.set({ tokensPerSecond: options.tokenRate, firstTokenDelayMs: 0, replyTokens: options.tokens })
    // --quick leaves the bare proxy out of the streams (the added figures are Nexxi − direct) to stay short.
    const streamTargets: ReadonlyArray<StreamTarget> = [
      { name: "direct", url: `${upstream.url}/v1/chat/completions`, headers: {}, body: upstreamBody },
      ...(quick ? [] : [{ name: "bare" as const, url: `${bare.url}/v1/chat/stream`, headers: {}, body: nexxiBody }]),
      { name: "nexxi", url: `${nexxi.url}/v1/chat/stream`, headers: { "x-api-key": key }, body: nexxiBody }
    ]
    // What every stream must receive: the upstream's tokens, read once directly.
    const reference = await oneStream(streamTargets[0]!, new Agent(), () => {})
    const expected = reference.tokens
    if (expected.length !== options.tokens)
      throw new Error(`upstream sent ${expected.length} tokens, not ${options.tokens}`)
    const lifetimeMs = (options.tokens / options.tokenRate) * 1000
    const streamMeasureMs = Math.max(options.durationS * 1000, (quick ? 2 : 3) * lifetimeMs)
    const streamWarmupMs = lifetimeMs + (quick ? 300 : 1_000)
    log(
      `\n2. streams (POST /v1/chat/stream, ${options.tokens} tokens at ${options.tokenRate}/s each), ` +
        `${options.repeats} × ${(streamMeasureMs / 1000).toFixed(1)} s per configuration after ${(streamWarmupMs / 1000).toFixed(1)} s warm-up`
    )
    const cpu = {
      nexxi: () => cpuSeconds(nexxi.pid),
      bare: () => cpuSeconds(bare.pid),
      upstream: () => cpuSeconds(upstream.pid)
    }
    const streamRuns: Record<number, Record<string, Array<StreamRun>>> = {}
    if (profileDir !== undefined) await nexxi.startProfile()
    for (const concurrency of options.streams) {
      const byTarget: Record<string, Array<StreamRun>> = Object.fromEntries(
        streamTargets.map((target) => [target.name, []])
      )
      for (let repeat = 0; repeat < options.repeats; repeat++) {
        for (const target of streamTargets) {
          const run = await runStreams({
            target,
            concurrency,
            warmupMs: streamWarmupMs,
            measureMs: streamMeasureMs,
            lifetimeMs,
            graceMs: quick ? 500 : 5_000,
            expected,
            cpu
          })
          byTarget[target.name]!.push(run)
          if (run.failed_streams > 0 || run.lost_tokens > 0 || run.duplicated_tokens > 0 || run.unfinished_streams > 0)
            log(
              `  ${target.name} ×${concurrency}: ${run.failed_streams} failed stream(s), ${run.lost_tokens} lost, ` +
                `${run.duplicated_tokens} duplicated token(s), ${run.unfinished_streams} unfinished at the deadline ` +
                `(${run.no_first_token} measured without a first token) ${run.errors.slice(0, 3).join("; ")}`
            )
        }
      }
      streamRuns[concurrency] = byTarget
      const med = (name: string, pick: (run: StreamRun) => number) => spread((byTarget[name] ?? []).map(pick)).median
      log(
        `  ×${concurrency}: TTFT p50 direct ${med("direct", (r) => r.ttft_p50_ms).toFixed(2)} bare ${med("bare", (r) => r.ttft_p50_ms).toFixed(2)} ` +
          `nexxi ${med("nexxi", (r) => r.ttft_p50_ms).toFixed(2)} ms, p99 direct ${med("direct", (r) => r.ttft_p99_ms).toFixed(2)} ` +
          `nexxi ${med("nexxi", (r) => r.ttft_p99_ms).toFixed(2)} ms; nexxi ${med("nexxi", (r) => r.tokens_per_s).toFixed(0)} tokens/s  (${elapsed()})`
      )
    }

    if (profileDir !== undefined) await nexxi.stopProfile(join(profileDir, "streams.cpuprofile"))

    // ----- 3. memory ----------------------------------------------------------------------------------------
    log(`\n3. memory: ${options.memoryStreams} open idle streams, ${options.memoryRounds} rounds after a warm-up round`)
    const memoryRounds = await runMemory({
      nexxi,
      upstream,
      key,
      streams: options.memoryStreams,
      rounds: options.memoryRounds,
      log
    })
    const nexxiRssEnd = rssBytes(nexxi.pid)

    for (const child of children.reverse()) await child.stop()
    children.length = 0

    // ----- 4. safety ----------------------------------------------------------------------------------------
    log(`\n4. safety inspection cost (in this process, with the other processes stopped)`)
    const safety = runSafetyCost(SYSTEM_PROMPT, [1, 4, 16, 30], quick ? 300 : 2_000)
    for (const size of safety)
      log(
        `  ${String(size.size_kb).padStart(2)} KB: inspect p50 ${size.inspect_p50_ms.toFixed(3)} ms, p99 ` +
          `${size.inspect_p99_ms.toFixed(3)} ms (${size.inspect_per_kb_ms.toFixed(3)} ms/KB); storage redaction p50 ` +
          `${size.redact_p50_ms.toFixed(3)} ms`
      )

    // ----- results ------------------------------------------------------------------------------------------
    const result = buildResult({
      startMachine,
      stores,
      nonstreamRuns,
      nexxiCpuByConnections,
      streamRuns,
      memoryRounds,
      safety,
      nexxiRssEnd,
      streamMeasureMs,
      streamWarmupMs,
      warmupS
    })
    mkdirSync(options.out, { recursive: true })
    const stamp = result.date.replace(/[:.]/g, "-")
    // Formatted as the repository's Prettier would, so that committed results pass `npm run lint`.
    const prettier = (await resolveConfig(join(root, "package.json"))) ?? {}
    const json = await format(JSON.stringify(result), { ...prettier, parser: "json" })
    writeFileSync(join(options.out, "latest.json"), json)
    writeFileSync(join(options.out, `${stamp}${quick ? "-quick" : ""}.json`), json)
    writeFileSync(join(options.out, "latest.svg"), svgChart(result))
    writeFileSync(
      join(options.out, "latest.md"),
      await format(markdownReport(result), { ...prettier, parser: "markdown" })
    )
    log("\n" + summaryTable(result))
    log(`\nwritten: ${options.out}/latest.{json,md,svg}  (${elapsed()})`)

    if (profileDir !== undefined) {
      const profiles = readdirSync(profileDir).filter((file) => file.endsWith(".cpuprofile"))
      for (const file of profiles) {
        log(`\nCPU profile of Nexxi: ${join(profileDir, file)}`)
        log(summarizeProfile(join(profileDir, file), 25))
      }
    } else rmSync(work, { recursive: true, force: true })
  } finally {
    for (const child of children.reverse()) await child.stop().catch(() => {})
  }
}

const buildResult = (input: {
  startMachine: ReturnType<typeof machine>
  stores: { session: string; storage: string }
  nonstreamRuns: Record<string, Record<number, Array<NonStreamRun>>>
  nexxiCpuByConnections: Record<number, Array<number>>
  streamRuns: Record<number, Record<string, Array<StreamRun>>>
  memoryRounds: Awaited<ReturnType<typeof runMemory>>
  safety: ReturnType<typeof runSafetyCost>
  nexxiRssEnd: number
  streamMeasureMs: number
  streamWarmupMs: number
  warmupS: number
}): BenchResult => {
  const figure = (runs: ReadonlyArray<NonStreamRun>) => {
    const of = (pick: (run: NonStreamRun) => number, digits = 3) => roundSpread(spread(runs.map(pick)), digits)
    const rps = of((run) => run.rps, 0)
    const p50 = of((run) => run.p50_ms)
    const p90 = of((run) => run.p90_ms)
    const p99 = of((run) => run.p99_ms)
    return {
      rps: rps.median,
      p50_ms: p50.median,
      p90_ms: p90.median,
      p99_ms: p99.median,
      spread: { rps, p50_ms: p50, p90_ms: p90, p99_ms: p99 },
      requests: runs.reduce((sum, run) => sum + run.requests, 0),
      failures: runs.reduce((sum, run) => sum + run.failures, 0)
    }
  }
  const nonstream = Object.fromEntries(
    Object.entries(input.nonstreamRuns).map(([name, byConnections]) => [
      name,
      Object.fromEntries(Object.entries(byConnections).map(([connections, runs]) => [connections, figure(runs)]))
    ])
  ) as Record<"direct" | "bare" | "nexxi", Record<number, ReturnType<typeof figure>>>
  // Added latency per repeat (runs are interleaved, so run i of Nexxi and of direct saw the same machine).
  const added = Object.fromEntries(
    options.connections.map((connections) => {
      const nexxiRuns = input.nonstreamRuns.nexxi![connections]!
      const directRuns = input.nonstreamRuns.direct![connections]!
      const bareRuns = input.nonstreamRuns.bare![connections]!
      const diff = (pick: (run: NonStreamRun) => number, of: ReadonlyArray<NonStreamRun>) =>
        roundSpread(spread(nexxiRuns.map((run, index) => pick(run) - pick(of[index]!))), 3)
      return [
        connections,
        {
          p50_ms: diff((run) => run.p50_ms, directRuns),
          p90_ms: diff((run) => run.p90_ms, directRuns),
          p99_ms: diff((run) => run.p99_ms, directRuns),
          bare_added_p50_ms: roundSpread(
            spread(bareRuns.map((run, index) => run.p50_ms - directRuns[index]!.p50_ms)),
            3
          ),
          rps_ratio_to_bare: roundSpread(spread(nexxiRuns.map((run, index) => run.rps / bareRuns[index]!.rps)), 3),
          rps_ratio_to_direct: roundSpread(spread(nexxiRuns.map((run, index) => run.rps / directRuns[index]!.rps)), 3),
          nexxi_cpu_ms_per_request: roundSpread(spread(input.nexxiCpuByConnections[connections] ?? []), 3)
        }
      ]
    })
  )
  const saturation = (name: string) =>
    Math.max(...options.connections.map((connections) => nonstream[name as "nexxi"][connections]!.rps))

  const stream: Array<StreamResult> = options.streams.map((concurrency) => {
    const runs = input.streamRuns[concurrency]!
    const paired = (pick: (run: StreamRun) => number, name = "direct") =>
      roundSpread(spread(runs.nexxi!.map((run, index) => pick(run) - pick(runs[name]![index]!))), 3)
    const med = (name: string, pick: (run: StreamRun) => number, digits = 3) =>
      roundSpread(spread((runs[name] ?? []).map(pick)), digits)
    const perKiloToken = (name: string, process: string) =>
      med(name, (run) => (run.window_tokens > 0 ? (run.cpu_s[process]! / run.window_tokens) * 1000 : NaN), 4)
    const sum = (name: string, pick: (run: StreamRun) => number) =>
      (runs[name] ?? []).reduce((total, run) => total + pick(run), 0)
    const ttftAddedP50 = paired((run) => run.ttft_p50_ms)
    const ttftAddedP99 = paired((run) => run.ttft_p99_ms)
    const tokensPerS = med("nexxi", (run) => run.tokens_per_s, 0)
    const cpuPerK = perKiloToken("nexxi", "nexxi")
    return {
      concurrency,
      ttft_added_p50_ms: ttftAddedP50.median,
      ttft_added_p99_ms: ttftAddedP99.median,
      gap_added_p50_ms: paired((run) => run.gap_p50_ms).median,
      gap_added_p99_ms: paired((run) => run.gap_p99_ms).median,
      tokens_per_s: tokensPerS.median,
      lost_tokens: sum("nexxi", (run) => run.lost_tokens),
      duplicated_tokens: sum("nexxi", (run) => run.duplicated_tokens),
      failed_streams: sum("nexxi", (run) => run.failed_streams),
      unfinished_streams: sum("nexxi", (run) => run.unfinished_streams),
      no_first_token: sum("nexxi", (run) => run.no_first_token),
      streams_checked: sum("nexxi", (run) => run.streams),
      cpu_s_per_1k_tokens: cpuPerK.median,
      bare_cpu_s_per_1k_tokens: perKiloToken("bare", "bare").median,
      spread: {
        ttft_added_p50_ms: ttftAddedP50,
        ttft_added_p99_ms: ttftAddedP99,
        tokens_per_s: tokensPerS,
        cpu_s_per_1k_tokens: cpuPerK
      },
      targets: Object.fromEntries(
        Object.keys(runs).map((name) => [
          name,
          {
            ttft_p50_ms: med(name, (run) => run.ttft_p50_ms),
            ttft_p99_ms: med(name, (run) => run.ttft_p99_ms),
            gap_p50_ms: med(name, (run) => run.gap_p50_ms),
            gap_p99_ms: med(name, (run) => run.gap_p99_ms),
            tokens_per_s: med(name, (run) => run.tokens_per_s, 0),
            streams: sum(name, (run) => run.streams),
            lost_tokens: sum(name, (run) => run.lost_tokens),
            duplicated_tokens: sum(name, (run) => run.duplicated_tokens),
            failed_streams: sum(name, (run) => run.failed_streams),
            unfinished_streams: sum(name, (run) => run.unfinished_streams),
            errors: (runs[name] ?? []).flatMap((run) => run.errors).slice(0, 5)
          }
        ])
      ) as unknown as StreamResult["targets"]
    }
  })

  const rounds = input.memoryRounds
  const kb = (bytes: number) => round(bytes / 1024, 1)
  const perStream = (pick: (memory: (typeof rounds)[number]["open"]) => number) =>
    roundSpread(spread(rounds.map((r) => (pick(r.open) - pick(r.before)) / r.opened / 1024)), 1)
  const first = rounds[0]!
  const last = rounds[rounds.length - 1]!
  const rssPerStream = perStream((memory) => memory.rss)
  const heapPerStream = perStream((memory) => memory.heapUsed)

  return {
    date: new Date().toISOString(),
    command: `npm run bench -- ${process.argv.slice(2).join(" ")}`.trim(),
    machine: input.startMachine,
    runs: {
      quick: options.quick,
      repeats: options.repeats,
      nonstream_seconds_per_run: options.durationS,
      nonstream_warmup_seconds_per_target: input.warmupS,
      stream_measured_seconds_per_run: input.streamMeasureMs / 1000,
      stream_warmup_seconds_per_run: input.streamWarmupMs / 1000,
      connections: options.connections,
      streams: options.streams,
      token_rate_per_stream: options.tokenRate,
      tokens_per_stream: options.tokens,
      fast_reply_tokens: FAST_REPLY_TOKENS,
      memory_streams: options.memoryStreams,
      memory_rounds: options.memoryRounds,
      nexxi_stores: input.stores
    },
    nonstream: {
      ...nonstream,
      added,
      saturation: {
        direct_rps: saturation("direct"),
        bare_rps: saturation("bare"),
        nexxi_rps: saturation("nexxi"),
        nexxi_to_bare: round(saturation("nexxi") / saturation("bare"), 3)
      }
    },
    stream,
    memory: {
      streams: options.memoryStreams,
      rss_per_open_stream_kb: rssPerStream.median,
      heap_per_open_stream_kb: heapPerStream.median,
      rss_growth_after_rounds_kb: kb(last.after.rss - first.after.rss),
      heap_growth_after_rounds_kb: kb(last.after.heapUsed - first.after.heapUsed),
      spread: { rss_per_open_stream_kb: rssPerStream, heap_per_open_stream_kb: heapPerStream },
      rounds: rounds.map((r) => ({
        rss_before_mb: round(r.before.rss / 2 ** 20, 1),
        rss_open_mb: round(r.open.rss / 2 ** 20, 1),
        rss_after_mb: round(r.after.rss / 2 ** 20, 1),
        heap_before_mb: round(r.before.heapUsed / 2 ** 20, 1),
        heap_open_mb: round(r.open.heapUsed / 2 ** 20, 1),
        heap_after_mb: round(r.after.heapUsed / 2 ** 20, 1),
        open_seconds: round(r.openSeconds, 1)
      })),
      nexxi_rss_at_end_mb: round(input.nexxiRssEnd / 2 ** 20, 1)
    },
    safety: {
      sizes: input.safety.map((size) => ({
        size_kb: size.size_kb,
        inspect_p50_ms: round(size.inspect_p50_ms, 4),
        inspect_p99_ms: round(size.inspect_p99_ms, 4),
        redact_p50_ms: round(size.redact_p50_ms, 4),
        inspect_per_kb_ms: round(size.inspect_per_kb_ms, 4)
      })),
      inspect_ms_per_kb: round(spread(input.safety.map((size) => size.inspect_per_kb_ms)).median, 4)
    }
  }
}

const fixed = (value: number, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : "-")

const summaryTable = (result: BenchResult): string => {
  const lines: Array<string> = []
  lines.push("whole replies        rps      p50 ms   p90 ms   p99 ms   (median of runs)")
  for (const connections of result.runs.connections)
    for (const name of ["direct", "bare", "nexxi"] as const) {
      const figure = result.nonstream[name][connections]!
      lines.push(
        `  c=${String(connections).padEnd(3)} ${name.padEnd(7)} ${fixed(figure.rps, 0).padStart(8)} ${fixed(figure.p50_ms).padStart(8)} ` +
          `${fixed(figure.p90_ms).padStart(8)} ${fixed(figure.p99_ms).padStart(8)}`
      )
    }
  for (const connections of result.runs.connections) {
    const added = result.nonstream.added[connections]!
    lines.push(
      `  c=${String(connections).padEnd(3)} Nexxi added p50 ${fixed(added.p50_ms.median)} ms [${fixed(added.p50_ms.min)}..${fixed(added.p50_ms.max)}], ` +
        `p99 ${fixed(added.p99_ms.median)} ms [${fixed(added.p99_ms.min)}..${fixed(added.p99_ms.max)}]; rps ÷ bare ${fixed(added.rps_ratio_to_bare.median)}`
    )
  }
  lines.push(
    `  saturation: direct ${result.nonstream.saturation.direct_rps} rps, bare ${result.nonstream.saturation.bare_rps}, ` +
      `nexxi ${result.nonstream.saturation.nexxi_rps} (${fixed(100 * result.nonstream.saturation.nexxi_to_bare, 0)} % of bare)`
  )
  lines.push(
    "streams   TTFT added p50/p99 ms   gap added p50/p99 ms   tokens/s   lost  dup  failed/cut   CPU s/1k tokens (bare)"
  )
  for (const row of result.stream)
    lines.push(
      `  ×${String(row.concurrency).padEnd(5)} ${fixed(row.ttft_added_p50_ms).padStart(9)} / ${fixed(row.ttft_added_p99_ms).padEnd(9)} ` +
        `${fixed(row.gap_added_p50_ms).padStart(9)} / ${fixed(row.gap_added_p99_ms).padEnd(9)} ${fixed(row.tokens_per_s, 0).padStart(8)} ` +
        `${String(row.lost_tokens).padStart(6)} ${String(row.duplicated_tokens).padStart(4)} ${`${row.failed_streams}/${row.unfinished_streams}`.padStart(10)}   ` +
        `${fixed(row.cpu_s_per_1k_tokens, 4)} (${fixed(row.bare_cpu_s_per_1k_tokens, 4)})`
    )
  lines.push(
    `memory: ${fixed(result.memory.rss_per_open_stream_kb, 1)} KB RSS (${fixed(result.memory.heap_per_open_stream_kb, 1)} KB heap) per open stream; ` +
      `growth after ${result.runs.memory_rounds} rounds ${fixed(result.memory.rss_growth_after_rounds_kb, 0)} KB RSS, ` +
      `${fixed(result.memory.heap_growth_after_rounds_kb, 0)} KB heap`
  )
  lines.push(`safety: ${fixed(result.safety.inspect_ms_per_kb, 4)} ms per KB inspected (median over sizes)`)
  lines.push("targets:")
  for (const target of targetsOf(result))
    lines.push(`  ${target.met ? "met   " : "MISSED"} ${target.name}: ${target.value}`)
  return lines.join("\n")
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error))
  process.exitCode = 1
})
