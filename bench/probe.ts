/**
 * Loaded into Nexxi's process by the benchmark (`node --expose-gc --import tsx --import bench/probe.ts
 * src/main.ts`): answers memory questions and starts or stops a CPU profile over the IPC channel, which Nexxi itself
 * knows nothing about. CPU time is read from `/proc` by the parent instead, so the probe costs nothing while the
 * load runs. Profiling through the inspector (rather than `node --cpu-prof`) leaves start-up out of the profile.
 */
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector"

export type ProbeCommand =
  | { readonly id: number; readonly op: "memory" }
  | { readonly id: number; readonly op: "profile-start" }
  | { readonly id: number; readonly op: "profile-stop"; readonly file: string }

export interface ProbeMemory {
  readonly rss: number
  readonly heapUsed: number
  readonly heapTotal: number
  readonly external: number
}

const collect = globalThis.gc

const memory = (): ProbeMemory => {
  // Two full collections: the second frees what the first's finalizers released.
  collect?.()
  collect?.()
  const { rss, heapUsed, heapTotal, external } = process.memoryUsage()
  return { rss, heapUsed, heapTotal, external }
}

let inspector: Session | undefined

const post = (method: string, params?: object) =>
  new Promise<unknown>((resolve, reject) =>
    inspector!.post(method, params, (error, result) => (error ? reject(error) : resolve(result)))
  )

const startProfile = async () => {
  inspector = new Session()
  inspector.connect()
  await post("Profiler.enable")
  // 1 ms sampling: fine enough for per-request costs of a few milliseconds, cheap enough not to distort them.
  await post("Profiler.setSamplingInterval", { interval: 1000 })
  await post("Profiler.start")
}

const stopProfile = async (file: string) => {
  const { profile } = (await post("Profiler.stop")) as { profile: unknown }
  inspector?.disconnect()
  inspector = undefined
  writeFileSync(file, JSON.stringify(profile))
}

const answer = async (command: ProbeCommand): Promise<Record<string, unknown>> => {
  switch (command.op) {
    case "memory":
      return { memory: memory() }
    case "profile-start":
      await startProfile()
      return {}
    case "profile-stop":
      await stopProfile(command.file)
      return {}
  }
}

if (process.send !== undefined) {
  process.on("message", (command: ProbeCommand) => {
    void answer(command).then(
      (result) => process.send?.({ id: command.id, ...result }),
      (error: unknown) => process.send?.({ id: command.id, error: String(error) })
    )
  })
  // The channel must not keep Nexxi alive when it is told to stop.
  process.channel?.unref()
}
