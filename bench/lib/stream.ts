/**
 * Streaming replies: N concurrent SSE clients, each reading its stream to the end and checking every token against
 * what the upstream sends, then starting the next one, for the run's duration.
 */
import { setMaxListeners } from "node:events"
import { Agent, request } from "node:http"
import { ascending, quantile } from "./stats.js"

export interface StreamTarget {
  readonly name: "direct" | "bare" | "nexxi"
  readonly url: string
  readonly headers: Record<string, string>
  readonly body: string
}

/** Token texts of one SSE event: Nexxi's `{delta, finished}` or the Messages API's chunks. */
const tokenOf = (data: string): { token?: string; end?: boolean } => {
  if (data === "[DONE]") return { end: true }
  const event = JSON.parse(data) as {
    delta?: string
    finished?: boolean
    choices?: Array<{ delta?: { content?: string | null } }>
  }
  if (event.finished === true) return { end: true }
  const text = event.delta ?? event.choices?.[0]?.delta?.content ?? ""
  return text === "" ? {} : { token: text }
}

export interface StreamOutcome {
  readonly startedAt: number
  readonly ttftMs: number
  readonly gapsMs: ReadonlyArray<number>
  readonly tokens: ReadonlyArray<string>
  readonly completed: boolean
  readonly error?: string
}

/** Runs one stream to its end (or failure); `onToken` sees each token's arrival time. */
export const oneStream = (
  target: StreamTarget,
  agent: Agent,
  onToken: (at: number) => void,
  signal?: AbortSignal
): Promise<StreamOutcome> =>
  new Promise((resolve) => {
    const startedAt = performance.now()
    const tokens: Array<string> = []
    const gapsMs: Array<number> = []
    let ttftMs = NaN
    let last = 0
    let completed = false
    let settled = false
    const settle = (error?: string) => {
      if (settled) return
      settled = true
      resolve({ startedAt, ttftMs, gapsMs, tokens, completed, ...(error === undefined ? {} : { error }) })
    }
    const req = request(target.url, {
      method: "POST",
      agent,
      signal,
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(target.body),
        ...target.headers
      }
    })
    req.on("error", (error) => settle(signal?.aborted ? "cut" : error.message))
    req.on("response", (res) => {
      if (res.statusCode !== 200) {
        res.resume()
        return settle(`HTTP ${res.statusCode}`)
      }
      let buffer = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => {
        const now = performance.now()
        buffer += chunk
        let end: number
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          let data: string | undefined
          let kind = "message"
          for (const line of block.split("\n")) {
            if (line.startsWith("data: ")) data = line.slice(6)
            else if (line.startsWith("event: ")) kind = line.slice(7)
          }
          if (data === undefined) continue // a keep-alive comment
          if (kind === "error") return (settle(`error event: ${data}`), void res.destroy())
          const event = tokenOf(data)
          if (event.end) completed = true
          if (event.token === undefined) continue
          if (tokens.length === 0) ttftMs = now - startedAt
          else gapsMs.push(now - last)
          last = now
          tokens.push(event.token)
          onToken(now)
        }
      })
      res.on("end", () => settle(completed ? undefined : "ended early"))
      res.on("error", (error) => settle(signal?.aborted ? "cut" : error.message))
      res.on("close", () => settle(completed ? undefined : signal?.aborted ? "cut" : "closed early"))
    })
    req.end(target.body)
  })

/** Tokens missing from and extra in a stream compared with the expected ones (as multisets, in order or not). */
export const compareTokens = (expected: ReadonlyArray<string>, received: ReadonlyArray<string>) => {
  const counts = new Map<string, number>()
  for (const token of expected) counts.set(token, (counts.get(token) ?? 0) + 1)
  let duplicated = 0
  for (const token of received) {
    const left = counts.get(token) ?? 0
    if (left > 0) counts.set(token, left - 1)
    else duplicated++
  }
  let lost = 0
  for (const left of counts.values()) lost += left
  const inOrder = lost === 0 && duplicated === 0 && expected.every((token, index) => received[index] === token)
  return { lost, duplicated, inOrder }
}

export interface StreamRun {
  readonly streams: number
  /** Streams still running at the run's deadline (cut by the benchmark, not counted as lost). */
  readonly unfinished_streams: number
  /** Streams without a first token by the deadline: counted in TTFT at the deadline (a lower bound). */
  readonly no_first_token: number
  readonly measuredStreams: number
  readonly ttft_p50_ms: number
  readonly ttft_p99_ms: number
  readonly gap_p50_ms: number
  readonly gap_p99_ms: number
  readonly tokens_per_s: number
  readonly lost_tokens: number
  readonly duplicated_tokens: number
  readonly out_of_order_streams: number
  readonly failed_streams: number
  readonly errors: ReadonlyArray<string>
  /** CPU seconds of each measured process during the measured window. */
  readonly cpu_s: Record<string, number>
  readonly window_s: number
  readonly window_tokens: number
}

/**
 * `concurrency` clients, each running streams back to back. Clients start spread over one stream's lifetime, so
 * that the load is steady rather than a herd; the first `warmupMs` are not measured (streams started then, tokens
 * received then, CPU spent then), though their tokens are still checked.
 */
export const runStreams = async (options: {
  readonly target: StreamTarget
  readonly concurrency: number
  readonly warmupMs: number
  readonly measureMs: number
  readonly lifetimeMs: number
  /** After the measured window, how long running streams may take to finish before they are cut. */
  readonly graceMs: number
  readonly expected: ReadonlyArray<string>
  readonly cpu: Record<string, () => number>
}): Promise<StreamRun> => {
  const { target, concurrency, warmupMs, measureMs, lifetimeMs, expected } = options
  const deadline = new AbortController()
  setMaxListeners(0, deadline.signal)
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: concurrency })
  const start = performance.now()
  const windowStart = start + warmupMs
  const windowEnd = windowStart + measureMs
  let windowTokens = 0
  const onToken = (at: number) => {
    if (at >= windowStart && at < windowEnd) windowTokens++
  }
  const cpuAt = (): Record<string, number> =>
    Object.fromEntries(Object.entries(options.cpu).map(([name, read]) => [name, read()]))
  let cpuStart: Record<string, number> = {}
  let cpuEnd: Record<string, number> = {}
  const marks = [
    setTimeout(() => (cpuStart = cpuAt()), warmupMs),
    setTimeout(() => (cpuEnd = cpuAt()), warmupMs + measureMs),
    setTimeout(() => deadline.abort(), warmupMs + measureMs + lifetimeMs + options.graceMs)
  ]

  const outcomes: Array<StreamOutcome> = []
  const client = async () => {
    await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(lifetimeMs, warmupMs)))
    while (performance.now() < windowEnd && !deadline.signal.aborted)
      outcomes.push(await oneStream(target, agent, onToken, deadline.signal))
  }
  await Promise.all(Array.from({ length: concurrency }, client))
  marks.forEach(clearTimeout)
  if (cpuEnd[Object.keys(options.cpu)[0] ?? ""] === undefined) cpuEnd = cpuAt()
  agent.destroy()

  let lost = 0
  let duplicated = 0
  let outOfOrder = 0
  let failed = 0
  const ttfts: Array<number> = []
  const gaps: Array<number> = []
  let unfinished = 0
  let noFirstToken = 0
  const deadlineAt = windowEnd + lifetimeMs + options.graceMs
  const errors = new Map<string, number>()
  for (const outcome of outcomes) {
    const cut = outcome.error === "cut"
    const measured = outcome.startedAt >= windowStart && outcome.startedAt < windowEnd
    if (cut) unfinished++
    else {
      const check = compareTokens(expected, outcome.tokens)
      lost += check.lost
      duplicated += check.duplicated
      if (!check.inOrder && check.lost === 0 && check.duplicated === 0) outOfOrder++
      if (outcome.error !== undefined) {
        failed++
        errors.set(outcome.error, (errors.get(outcome.error) ?? 0) + 1)
      }
    }
    // A stream that never got its first token is counted whenever it started: it waited through the window.
    if (!measured && !(cut && !Number.isFinite(outcome.ttftMs))) continue
    if (Number.isFinite(outcome.ttftMs)) ttfts.push(outcome.ttftMs)
    else if (cut) {
      noFirstToken++
      ttfts.push(deadlineAt - outcome.startedAt)
    }
    for (const gap of outcome.gapsMs) gaps.push(gap)
  }
  const sortedTtft = ascending(ttfts)
  const sortedGaps = ascending(gaps)
  const windowS = measureMs / 1000
  return {
    streams: outcomes.length,
    unfinished_streams: unfinished,
    no_first_token: noFirstToken,
    measuredStreams: ttfts.length,
    ttft_p50_ms: quantile(sortedTtft, 0.5),
    ttft_p99_ms: quantile(sortedTtft, 0.99),
    gap_p50_ms: quantile(sortedGaps, 0.5),
    gap_p99_ms: quantile(sortedGaps, 0.99),
    tokens_per_s: windowTokens / windowS,
    lost_tokens: lost,
    duplicated_tokens: duplicated,
    out_of_order_streams: outOfOrder,
    failed_streams: failed,
    errors: [...errors].map(([error, count]) => `${count}× ${error.slice(0, 200)}`),
    cpu_s: Object.fromEntries(Object.entries(cpuEnd).map(([name, end]) => [name, end - (cpuStart[name] ?? end)])),
    window_s: windowS,
    window_tokens: windowTokens
  }
}
