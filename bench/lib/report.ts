/** The benchmark's result: its JSON shape, the targets of issue #12, the Markdown report and the SVG chart. */
import type { Spread } from "./stats.js"

export interface NonStreamFigure {
  readonly rps: number
  readonly p50_ms: number
  readonly p90_ms: number
  readonly p99_ms: number
  readonly spread: { readonly rps: Spread; readonly p50_ms: Spread; readonly p90_ms: Spread; readonly p99_ms: Spread }
  readonly requests: number
  readonly failures: number
}

export interface AddedFigure {
  readonly p50_ms: Spread
  readonly p90_ms: Spread
  readonly p99_ms: Spread
  readonly bare_added_p50_ms: Spread
  readonly rps_ratio_to_bare: Spread
  readonly rps_ratio_to_direct: Spread
  readonly nexxi_cpu_ms_per_request: Spread
}

export interface StreamTargetFigure {
  readonly ttft_p50_ms: Spread
  readonly ttft_p99_ms: Spread
  readonly gap_p50_ms: Spread
  readonly gap_p99_ms: Spread
  readonly tokens_per_s: Spread
  readonly streams: number
  readonly lost_tokens: number
  readonly duplicated_tokens: number
  readonly failed_streams: number
  readonly unfinished_streams: number
  readonly errors: ReadonlyArray<string>
}

export interface StreamResult {
  readonly concurrency: number
  readonly ttft_added_p50_ms: number
  readonly ttft_added_p99_ms: number
  readonly gap_added_p50_ms: number
  readonly gap_added_p99_ms: number
  readonly tokens_per_s: number
  readonly lost_tokens: number
  readonly duplicated_tokens: number
  readonly failed_streams: number
  readonly unfinished_streams: number
  readonly no_first_token: number
  readonly streams_checked: number
  readonly cpu_s_per_1k_tokens: number
  readonly bare_cpu_s_per_1k_tokens: number
  readonly spread: {
    readonly ttft_added_p50_ms: Spread
    readonly ttft_added_p99_ms: Spread
    readonly tokens_per_s: Spread
    readonly cpu_s_per_1k_tokens: Spread
  }
  /** The bare proxy is left out of the streams with --quick. */
  readonly targets: Partial<Record<"direct" | "bare" | "nexxi", StreamTargetFigure>>
}

type ByConnections<A> = Record<string | number, A>

export interface BenchResult {
  readonly date: string
  readonly command: string
  readonly machine: {
    readonly cpu: string
    readonly cores: number
    readonly node: string
    readonly os: string
    readonly memory_gb: number
    readonly free_memory_gb_at_start: number
    readonly load_average_at_start: ReadonlyArray<number>
  }
  readonly runs: {
    readonly quick: boolean
    readonly repeats: number
    readonly nonstream_seconds_per_run: number
    readonly nonstream_warmup_seconds_per_target: number
    readonly stream_measured_seconds_per_run: number
    readonly stream_warmup_seconds_per_run: number
    readonly connections: ReadonlyArray<number>
    readonly streams: ReadonlyArray<number>
    readonly token_rate_per_stream: number
    readonly tokens_per_stream: number
    readonly fast_reply_tokens: number
    readonly memory_streams: number
    readonly memory_rounds: number
    readonly nexxi_stores: { readonly session: string; readonly storage: string }
  }
  readonly nonstream: {
    readonly direct: ByConnections<NonStreamFigure>
    readonly bare: ByConnections<NonStreamFigure>
    readonly nexxi: ByConnections<NonStreamFigure>
    readonly added: ByConnections<AddedFigure>
    readonly saturation: {
      readonly direct_rps: number
      readonly bare_rps: number
      readonly nexxi_rps: number
      readonly nexxi_to_bare: number
    }
  }
  readonly stream: ReadonlyArray<StreamResult>
  readonly memory: {
    readonly streams: number
    readonly rss_per_open_stream_kb: number
    readonly heap_per_open_stream_kb: number
    readonly rss_growth_after_rounds_kb: number
    readonly heap_growth_after_rounds_kb: number
    readonly spread: { readonly rss_per_open_stream_kb: Spread; readonly heap_per_open_stream_kb: Spread }
    readonly rounds: ReadonlyArray<Record<string, number>>
    readonly nexxi_rss_at_end_mb: number
  }
  readonly safety: {
    readonly sizes: ReadonlyArray<{
      readonly size_kb: number
      readonly inspect_p50_ms: number
      readonly inspect_p99_ms: number
      readonly redact_p50_ms: number
      readonly inspect_per_kb_ms: number
    }>
    readonly inspect_ms_per_kb: number
  }
}

const fixed = (value: number, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : "–")
const range = (value: Spread, digits = 2) =>
  `${fixed(value.median, digits)} (${fixed(value.min, digits)}–${fixed(value.max, digits)})`

export interface TargetCheck {
  readonly name: string
  readonly met: boolean
  readonly value: string
}

/** The targets of issue #12, reported against (they are not tests). */
export const targetsOf = (result: BenchResult): ReadonlyArray<TargetCheck> => {
  const lowest = Math.min(...result.runs.connections)
  const added = result.nonstream.added[lowest]
  const largest = result.stream.reduce<StreamResult | undefined>(
    (top, row) => (top === undefined || row.concurrency > top.concurrency ? row : top),
    undefined
  )
  const checks: Array<TargetCheck> = []
  if (added !== undefined) {
    checks.push({
      name: `added median latency ≤ 1 ms at concurrency ${lowest}`,
      met: added.p50_ms.median <= 1,
      value: `${fixed(added.p50_ms.median, 3)} ms (runs ${fixed(added.p50_ms.min, 3)}–${fixed(added.p50_ms.max, 3)})`
    })
    checks.push({
      name: `added p99 latency ≤ 5 ms at concurrency ${lowest}`,
      met: added.p99_ms.median <= 5,
      value: `${fixed(added.p99_ms.median, 3)} ms (runs ${fixed(added.p99_ms.min, 3)}–${fixed(added.p99_ms.max, 3)})`
    })
  }
  checks.push({
    name: "saturated throughput ≥ 50 % of the bare proxy's",
    met: result.nonstream.saturation.nexxi_to_bare >= 0.5,
    value: `${fixed(100 * result.nonstream.saturation.nexxi_to_bare, 1)} % (${result.nonstream.saturation.nexxi_rps} vs ${result.nonstream.saturation.bare_rps} rps)`
  })
  if (largest !== undefined) {
    const allLost = result.stream.reduce((sum, row) => sum + row.lost_tokens + row.duplicated_tokens, 0)
    checks.push({
      name: `${largest.concurrency} concurrent streams with zero lost or duplicated tokens`,
      met:
        largest.lost_tokens === 0 &&
        largest.duplicated_tokens === 0 &&
        largest.failed_streams === 0 &&
        largest.unfinished_streams === 0,
      value:
        `${largest.lost_tokens} lost, ${largest.duplicated_tokens} duplicated; ${largest.failed_streams} failed and ` +
        `${largest.unfinished_streams} unfinished at the deadline, of ${largest.streams_checked} streams (all ` +
        `concurrencies: ${allLost} lost or duplicated)`
    })
    checks.push({
      name: `added p99 TTFT ≤ 50 ms at ${largest.concurrency} streams`,
      // Streams cut before their first token make the figure a lower bound: then it cannot count as met.
      met:
        Number.isFinite(largest.ttft_added_p99_ms) && largest.ttft_added_p99_ms <= 50 && largest.no_first_token === 0,
      value:
        `${fixed(largest.ttft_added_p99_ms)} ms (runs ${fixed(largest.spread.ttft_added_p99_ms.min)}–` +
        `${fixed(largest.spread.ttft_added_p99_ms.max)}); ${largest.no_first_token} stream(s) had no first token ` +
        `by the deadline (counted at the deadline)`
    })
  }
  checks.push({
    name: "≤ 64 KB memory per open stream",
    met: result.memory.rss_per_open_stream_kb <= 64,
    value: `${fixed(result.memory.rss_per_open_stream_kb, 1)} KB RSS (${fixed(result.memory.heap_per_open_stream_kb, 1)} KB heap)`
  })
  return checks
}

export const markdownReport = (result: BenchResult): string => {
  const { machine, runs } = result
  const out: Array<string> = []
  const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
    out.push(`| ${header.join(" | ")} |`)
    out.push(`| ${header.map((_cell, index) => (index === 0 ? "---" : "---:")).join(" | ")} |`)
    for (const row of rows) out.push(`| ${row.join(" | ")} |`)
    out.push("")
  }
  out.push(`# Nexxi benchmark: ${result.date.slice(0, 16).replace("T", " ")} UTC${runs.quick ? " (quick)" : ""}`)
  out.push("")
  out.push(
    `\`${result.command}\` on ${machine.cpu}, ${machine.cores} cores, ${machine.memory_gb} GB, ${machine.os}, Node ` +
      `${machine.node}; load average at start ${machine.load_average_at_start.join(" / ")}. Nexxi's sessions: ` +
      `${runs.nexxi_stores.session}; storage: ${runs.nexxi_stores.storage}. Every process (load generator, upstream, ` +
      `bare proxy, Nexxi) shares these cores.`
  )
  out.push("")
  out.push(
    `Each configuration ran ${runs.repeats} times, interleaved across targets; figures are the median of the runs, ` +
      `with (min–max) where shown. Warm-up excluded: ${runs.nonstream_warmup_seconds_per_target} s per target before ` +
      `the whole-reply runs, and the first ${runs.stream_warmup_seconds_per_run} s of every streaming run.`
  )
  out.push("")
  out.push("![latency percentiles and throughput](latest.svg)")
  out.push("")
  out.push("## Targets")
  out.push("")
  table(
    ["Target", "Result", "Measured"],
    targetsOf(result).map((target) => [target.name, target.met ? "met" : "**missed**", target.value])
  )
  out.push(`## 1. Whole replies: POST /v1/chat, ${runs.fast_reply_tokens}-token instant reply`)
  out.push("")
  out.push(`${runs.nonstream_seconds_per_run} s per run, autocannon, one request at a time per connection.`)
  out.push("")
  table(
    ["Connections", "Target", "Requests/s", "p50 ms", "p90 ms", "p99 ms"],
    runs.connections.flatMap((connections) =>
      (["direct", "bare", "nexxi"] as const).map((name) => {
        const figure = result.nonstream[name][connections]!
        return [
          String(connections),
          name,
          range(figure.spread.rps, 0),
          range(figure.spread.p50_ms),
          range(figure.spread.p90_ms),
          range(figure.spread.p99_ms)
        ]
      })
    )
  )
  out.push("What Nexxi adds (Nexxi − direct, run by run), and its throughput against the bare proxy:")
  out.push("")
  table(
    [
      "Connections",
      "Added p50 ms",
      "Added p90 ms",
      "Added p99 ms",
      "Bare proxy adds p50 ms",
      "Nexxi rps ÷ bare",
      "Nexxi CPU ms/request"
    ],
    runs.connections.map((connections) => {
      const added = result.nonstream.added[connections]!
      return [
        String(connections),
        range(added.p50_ms, 3),
        range(added.p90_ms, 3),
        range(added.p99_ms, 3),
        range(added.bare_added_p50_ms, 3),
        range(added.rps_ratio_to_bare),
        range(added.nexxi_cpu_ms_per_request)
      ]
    })
  )
  const saturation = result.nonstream.saturation
  out.push(
    `Saturated throughput (best concurrency): direct ${saturation.direct_rps} rps, bare proxy ${saturation.bare_rps}, ` +
      `Nexxi ${saturation.nexxi_rps} (${fixed(100 * saturation.nexxi_to_bare, 1)} % of the bare proxy).`
  )
  out.push("")
  out.push(
    `## 2. Streams: POST /v1/chat/stream, ${runs.tokens_per_stream} tokens at ${runs.token_rate_per_stream} tokens/s each`
  )
  out.push("")
  out.push(
    `${runs.stream_measured_seconds_per_run} s measured per run; each client starts its next stream when one ends. ` +
      `Added = Nexxi − direct, run by run. Lost and duplicated tokens are counted over every stream, warm-up included. ` +
      `A stream still running ${runs.quick ? 1 : 5} s after its expected end past the window is cut and counted as ` +
      `unfinished; one cut before its first token counts in TTFT at the cut (a lower bound).`
  )
  out.push("")
  table(
    [
      "Streams",
      "Added TTFT p50 ms",
      "Added TTFT p99 ms",
      "Added gap p50 / p99 ms",
      "Tokens/s (Nexxi)",
      "Lost",
      "Duplicated",
      "Failed / unfinished streams",
      "CPU s / 1k tokens: Nexxi (bare)"
    ],
    result.stream.map((row) => [
      String(row.concurrency),
      range(row.spread.ttft_added_p50_ms),
      range(row.spread.ttft_added_p99_ms),
      `${fixed(row.gap_added_p50_ms)} / ${fixed(row.gap_added_p99_ms)}`,
      range(row.spread.tokens_per_s, 0),
      String(row.lost_tokens),
      String(row.duplicated_tokens),
      `${row.failed_streams} / ${row.unfinished_streams} of ${row.streams_checked}`,
      `${fixed(row.cpu_s_per_1k_tokens, 4)} (${fixed(row.bare_cpu_s_per_1k_tokens, 4)})`
    ])
  )
  table(
    ["Streams", "Target", "TTFT p50 ms", "TTFT p99 ms", "Gap p50 ms", "Gap p99 ms", "Tokens/s", "Streams"],
    result.stream.flatMap((row) =>
      (["direct", "bare", "nexxi"] as const).flatMap((name) => {
        const figure = row.targets[name]
        if (figure === undefined) return []
        return [
          [
            String(row.concurrency),
            name,
            range(figure.ttft_p50_ms),
            range(figure.ttft_p99_ms),
            range(figure.gap_p50_ms),
            range(figure.gap_p99_ms),
            range(figure.tokens_per_s, 0),
            String(figure.streams)
          ]
        ]
      })
    )
  )
  const memory = result.memory
  out.push(`## 3. Memory: ${memory.streams} open, idle streams`)
  out.push("")
  out.push(
    `Per open stream: ${range(memory.spread.rss_per_open_stream_kb, 1)} KB of RSS, ` +
      `${range(memory.spread.heap_per_open_stream_kb, 1)} KB of V8 heap (after a full GC). After ${runs.memory_rounds} ` +
      `rounds of opening, closing and deleting their sessions: ${fixed(memory.rss_growth_after_rounds_kb, 0)} KB RSS, ` +
      `${fixed(memory.heap_growth_after_rounds_kb, 0)} KB heap growth from the first round's end to the last's.`
  )
  out.push("")
  table(
    ["Round", "RSS before MB", "RSS open MB", "RSS after MB", "Heap before MB", "Heap open MB", "Heap after MB"],
    memory.rounds.map((r, index) => [
      String(index + 1),
      fixed(r.rss_before_mb!, 1),
      fixed(r.rss_open_mb!, 1),
      fixed(r.rss_after_mb!, 1),
      fixed(r.heap_before_mb!, 1),
      fixed(r.heap_open_mb!, 1),
      fixed(r.heap_after_mb!, 1)
    ])
  )
  out.push("## 4. Safety inspection")
  out.push("")
  out.push(`Median ${fixed(result.safety.inspect_ms_per_kb, 4)} ms per KB of ordinary prose.`)
  out.push("")
  table(
    ["Message", "Inspect p50 ms", "Inspect p99 ms", "ms per KB", "Storage redaction p50 ms"],
    result.safety.sizes.map((size) => [
      `${size.size_kb} KB`,
      fixed(size.inspect_p50_ms, 3),
      fixed(size.inspect_p99_ms, 3),
      fixed(size.inspect_per_kb_ms, 4),
      fixed(size.redact_p50_ms, 3)
    ])
  )
  out.push("## What is compared")
  out.push("")
  out.push(
    "- **direct**: the client sends the upstream request Nexxi itself sends — TGI's Messages API, " +
      "`POST /v1/chat/completions` with the system prompt and the message, `max_tokens`, `stream: true` and usage — " +
      "to the TGI-compatible development server (`dev/tgi/server.ts`), and reads the stream to its end. This is the " +
      "floor of the floor: the model server alone.\n" +
      "- **bare**: `bench/bare.ts`, a proxy on Node's `http` module alone. It takes Nexxi's request (`{message}` on " +
      "`/v1/chat` or `/v1/chat/stream`), makes the same upstream request on a keep-alive agent, and pipes the SSE " +
      "bytes back unchanged (streams) or concatenates the deltas into one JSON reply (`/v1/chat`). No auth, limits, " +
      "safety, session, storage, logs or metrics: what any gateway costs.\n" +
      "- **nexxi**: `src/main.ts` as `npm start` runs it, `GENERATOR=tgi`, with auth, rate limiting (no limit set, so " +
      "nothing is refused, but every request is counted), safety, sessions, storage, JSON logs (to a file) and " +
      "metrics on. Every request starts a new session, so each turn is locked, windowed, saved and stored.\n" +
      "- Upstream, proxy and Nexxi are separate processes (CPU time from `/proc`); the load generator is this " +
      "process. Memory is read in Nexxi's process through a preloaded probe (`bench/probe.ts`) after a full GC."
  )
  out.push("")
  return out.join("\n")
}

// ----- SVG ----------------------------------------------------------------------------------------------------

const COLORS = { direct: "#8c8c8c", bare: "#4c78a8", nexxi: "#f58518" } as const
const escape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

/** Grouped bars: one group per label, one bar per series; a log scale when values span decades. */
const barPanel = (options: {
  readonly x: number
  readonly y: number
  readonly width: number
  readonly height: number
  readonly title: string
  readonly unit: string
  readonly groups: ReadonlyArray<{
    readonly label: string
    readonly bars: ReadonlyArray<{ readonly series: keyof typeof COLORS; readonly value: number }>
  }>
  readonly log: boolean
}): string => {
  const { x, y, width, height, groups } = options
  const values = groups.flatMap((group) => group.bars.map((bar) => bar.value)).filter((value) => value > 0)
  const max = Math.max(...values, 1e-9)
  const min = Math.max(Math.min(...values), max / 1e4)
  const low = options.log ? 10 ** Math.floor(Math.log10(min)) : 0
  const high = options.log ? 10 ** Math.ceil(Math.log10(max)) : max * 1.1
  const scale = (value: number) =>
    options.log
      ? (Math.log10(Math.max(value, low)) - Math.log10(low)) / (Math.log10(high) - Math.log10(low))
      : value / high
  const top = y + 28
  const plotHeight = height - 60
  const parts: Array<string> = [
    `<text x="${x}" y="${y + 14}" font-size="13" font-weight="bold">${escape(options.title)}</text>`,
    `<line x1="${x + 40}" y1="${top + plotHeight}" x2="${x + width}" y2="${top + plotHeight}" stroke="#333"/>`
  ]
  const ticks = options.log
    ? Array.from({ length: Math.round(Math.log10(high / low)) + 1 }, (_, index) => low * 10 ** index)
    : [0, high / 4, high / 2, (3 * high) / 4, high]
  for (const tick of ticks) {
    const ty = top + plotHeight - scale(tick) * plotHeight
    parts.push(`<line x1="${x + 40}" y1="${ty}" x2="${x + width}" y2="${ty}" stroke="#e5e5e5"/>`)
    parts.push(
      `<text x="${x + 36}" y="${ty + 4}" font-size="10" text-anchor="end">${tick >= 100 ? tick.toFixed(0) : +tick.toPrecision(2)}</text>`
    )
  }
  parts.push(`<text x="${x}" y="${top - 6}" font-size="10">${escape(options.unit)}</text>`)
  const groupWidth = (width - 50) / groups.length
  groups.forEach((group, groupIndex) => {
    const gx = x + 45 + groupIndex * groupWidth
    const barWidth = (groupWidth - 10) / group.bars.length
    group.bars.forEach((bar, barIndex) => {
      const h = Math.max(1, scale(bar.value) * plotHeight)
      const bx = gx + barIndex * barWidth
      parts.push(
        `<rect x="${bx.toFixed(1)}" y="${(top + plotHeight - h).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[bar.series]}"><title>${bar.series}: ${fixed(bar.value, 3)}</title></rect>`
      )
    })
    parts.push(
      `<text x="${(gx + (groupWidth - 10) / 2).toFixed(1)}" y="${top + plotHeight + 14}" font-size="10" text-anchor="middle">${escape(group.label)}</text>`
    )
  })
  return parts.join("\n")
}

export const svgChart = (result: BenchResult): string => {
  const series = ["direct", "bare", "nexxi"] as const
  const width = 980
  const latencyGroups = result.runs.connections.flatMap((connections) =>
    (["p50_ms", "p90_ms", "p99_ms"] as const).map((percentile) => ({
      label: `c${connections} ${percentile.slice(0, 3)}`,
      bars: series.map((name) => ({ series: name, value: result.nonstream[name][connections]![percentile] }))
    }))
  )
  const throughputGroups = result.runs.connections.map((connections) => ({
    label: `${connections} conn.`,
    bars: series.map((name) => ({ series: name, value: result.nonstream[name][connections]!.rps }))
  }))
  const ttftGroups = result.stream.flatMap((row) =>
    (["ttft_p50_ms", "ttft_p99_ms"] as const).map((percentile) => ({
      label: `${row.concurrency} ${percentile === "ttft_p50_ms" ? "p50" : "p99"}`,
      bars: series.flatMap((name) => {
        const figure = row.targets[name]
        return figure === undefined ? [] : [{ series: name, value: figure[percentile].median }]
      })
    }))
  )
  const tokensGroups = result.stream.map((row) => ({
    label: `${row.concurrency} streams`,
    bars: series.flatMap((name) => {
      const figure = row.targets[name]
      return figure === undefined ? [] : [{ series: name, value: figure.tokens_per_s.median }]
    })
  }))
  const legend = series
    .map(
      (name, index) =>
        `<rect x="${20 + index * 110}" y="34" width="12" height="12" fill="${COLORS[name]}"/><text x="${36 + index * 110}" y="44" font-size="12">${name === "bare" ? "bare proxy" : name}</text>`
    )
    .join("\n")
  const { machine } = result
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="700" viewBox="0 0 ${width} 700" font-family="Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="22" font-size="15" font-weight="bold">Nexxi vs direct-to-upstream vs bare proxy: ${escape(result.date.slice(0, 10))}${result.runs.quick ? " (quick)" : ""}, ${escape(machine.cpu)}, ${machine.cores} cores, Node ${escape(machine.node)}</text>
${legend}
${barPanel({ x: 20, y: 60, width: 600, height: 300, title: "Whole replies: latency percentiles by connections", unit: "ms (log)", groups: latencyGroups, log: true })}
${barPanel({ x: 650, y: 60, width: 310, height: 300, title: "Whole replies: throughput", unit: "requests/s", groups: throughputGroups, log: false })}
${barPanel({ x: 20, y: 380, width: 600, height: 300, title: "Streams: time to first token by concurrent streams", unit: "ms (log)", groups: ttftGroups, log: true })}
${barPanel({ x: 650, y: 380, width: 310, height: 300, title: "Streams: tokens delivered", unit: "tokens/s", groups: tokensGroups, log: false })}
</svg>
`
}
