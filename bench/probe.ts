/**
 * Loaded into Nexxi's process by the benchmark (`node --expose-gc --import tsx --import bench/probe.ts
 * src/main.ts`): answers memory questions over the IPC channel, which Nexxi itself knows nothing about. CPU time
 * is read from `/proc` by the parent instead, so the probe costs nothing while the load runs.
 */
export type ProbeCommand = { readonly id: number; readonly op: "memory" }

export interface ProbeMemory {
  readonly rss: number
  readonly heapUsed: number
  readonly heapTotal: number
  readonly external: number
}

const collect = globalThis.gc

if (process.send !== undefined) {
  process.on("message", (command: ProbeCommand) => {
    if (command.op !== "memory") return
    // Two full collections: the second frees what the first's finalizers released.
    collect?.()
    collect?.()
    const { rss, heapUsed, heapTotal, external } = process.memoryUsage()
    process.send?.({ id: command.id, memory: { rss, heapUsed, heapTotal, external } satisfies ProbeMemory })
  })
  // The channel must not keep Nexxi alive when it is told to stop.
  process.channel?.unref()
}
