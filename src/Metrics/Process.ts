/**
 * The Node process as Prometheus sees it: CPU, memory, event-loop lag and garbage collection, sampled when
 * `/metrics` is scraped (so the figures are fresh without a timer of their own).
 */
import { Effect, Metric, MetricBoundaries } from "effect"
import { type IntervalHistogram, monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks"

const cpuSeconds = Metric.counter("nexxi_process_cpu_seconds_total", {
  description: "CPU time used by the process (user + system).",
  incremental: true
})
const residentMemory = Metric.gauge("nexxi_process_resident_memory_bytes", {
  description: "Resident set size of the process."
})
const heapUsed = Metric.gauge("nexxi_process_heap_used_bytes", { description: "V8 heap in use." })
const heapTotal = Metric.gauge("nexxi_process_heap_total_bytes", { description: "V8 heap allocated." })
const eventLoopLag = Metric.gauge("nexxi_process_event_loop_lag_seconds", {
  description: "99th percentile of event-loop delay since the previous scrape."
})
const eventLoopLagMax = Metric.gauge("nexxi_process_event_loop_lag_max_seconds", {
  description: "Longest event-loop delay since the previous scrape."
})
const gcDuration = Metric.histogram(
  "nexxi_process_gc_duration_seconds",
  MetricBoundaries.fromIterable([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]),
  "Garbage collection pauses."
)

/** CPU use is a process-wide counter: every sampler adds only what was used since the last sample anywhere. */
let lastCpuMicros = 0

/** Starts watching the event loop and the collector for the life of the scope; returns the sampler. */
export const processMetrics = Effect.gen(function* () {
  const loop: IntervalHistogram = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const histogram = monitorEventLoopDelay({ resolution: 10 })
      histogram.enable()
      return histogram
    }),
    (histogram) => Effect.sync(() => histogram.disable())
  )
  // GC pauses are reported by a callback: buffer them, and record them at the next sample.
  const pauses: Array<number> = []
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      const observer = new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) if (pauses.length < 10_000) pauses.push(entry.duration / 1000)
      })
      observer.observe({ entryTypes: ["gc"] })
      return observer
    }),
    (observer) => Effect.sync(() => observer.disconnect())
  )

  return Effect.gen(function* () {
    const usage = process.cpuUsage()
    const cpuMicros = usage.user + usage.system
    yield* Metric.incrementBy(cpuSeconds, Math.max(0, cpuMicros - lastCpuMicros) / 1e6)
    lastCpuMicros = Math.max(lastCpuMicros, cpuMicros)
    const memory = process.memoryUsage()
    yield* Metric.set(residentMemory, memory.rss)
    yield* Metric.set(heapUsed, memory.heapUsed)
    yield* Metric.set(heapTotal, memory.heapTotal)
    // The histogram is in nanoseconds; NaN until the loop has been measured once.
    yield* Metric.set(eventLoopLag, (loop.percentile(99) || 0) / 1e9)
    yield* Metric.set(eventLoopLagMax, (loop.max || 0) / 1e9)
    loop.reset()
    for (const pause of pauses.splice(0)) yield* Metric.update(gcDuration, pause)
  })
})
