/** Whole replies (`POST /v1/chat`) under autocannon: throughput and latency at a fixed number of connections. */
import autocannon from "autocannon"
import { ascending, quantile } from "./stats.js"

export interface Target {
  readonly name: "direct" | "bare" | "nexxi"
  readonly url: string
  readonly headers: Record<string, string>
  readonly body: string
}

export interface NonStreamRun {
  readonly rps: number
  readonly p50_ms: number
  readonly p90_ms: number
  readonly p99_ms: number
  readonly requests: number
  readonly failures: number
}

/**
 * One run. autocannon's own histogram keeps whole milliseconds; the latencies here are its per-response timings
 * (sub-millisecond), kept in full, so that a difference of a fraction of a millisecond is visible.
 */
export const runNonStream = (target: Target, connections: number, seconds: number) =>
  new Promise<NonStreamRun>((resolve, reject) => {
    const latencies: Array<number> = []
    let failures = 0
    const instance = autocannon(
      {
        url: target.url,
        method: "POST",
        body: target.body,
        headers: { "content-type": "application/json", ...target.headers },
        connections,
        duration: seconds,
        timeout: 30
      },
      (error, result) => {
        if (error) return reject(error)
        const sorted = ascending(latencies)
        resolve({
          rps: result["2xx"] / result.duration,
          p50_ms: quantile(sorted, 0.5),
          p90_ms: quantile(sorted, 0.9),
          p99_ms: quantile(sorted, 0.99),
          requests: result["2xx"],
          failures: failures + result.errors + result.timeouts
        })
      }
    )
    instance.on("response", (_client, statusCode, _bytes, ms) => {
      if (statusCode === 200) latencies.push(ms)
      else failures++
    })
  })
