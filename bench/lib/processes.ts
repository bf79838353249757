/** The benchmark's child processes: the upstream, the bare proxy and Nexxi, each measurable through `/proc`. */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { openSync, readFileSync } from "node:fs"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { TgiRuntimeOptions } from "../../dev/tgi/server.js"
import type { ProbeMemory } from "../probe.js"

export const root = fileURLToPath(new URL("../..", import.meta.url))
const tsxLoader = pathToFileURL(`${root}node_modules/tsx/dist/loader.mjs`).href

const clockTicks = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
})()

/** User + system CPU seconds of a process so far (Linux `/proc/<pid>/stat`). */
export const cpuSeconds = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  // The command name may contain spaces: fields are counted after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / clockTicks
}

/** Resident set size in bytes (`/proc/<pid>/status`). */
export const rssBytes = (pid: number): number => {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  return match ? Number(match[1]) * 1024 : 0
}

export interface Child {
  readonly name: string
  readonly url: string
  readonly process: ChildProcess
  readonly pid: number
  /** Sends a command over IPC and resolves with the answer carrying the same id. */
  readonly ask: <A>(command: Record<string, unknown>) => Promise<A>
  readonly stop: () => Promise<void>
}

const withIpc = (name: string, child: ChildProcess, url: string): Child => {
  let nextId = 1
  const waiting = new Map<number, (answer: unknown) => void>()
  child.on("message", (message: { id?: number }) => {
    if (message.id === undefined) return
    waiting.get(message.id)?.(message)
    waiting.delete(message.id)
  })
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  return {
    name,
    url,
    process: child,
    pid: child.pid!,
    ask: <A>(command: Record<string, unknown>) =>
      new Promise<A>((resolve, reject) => {
        const id = nextId++
        const timer = setTimeout(() => reject(new Error(`${name}: no answer to ${JSON.stringify(command)}`)), 30_000)
        waiting.set(id, (answer) => (clearTimeout(timer), resolve(answer as A)))
        child.send({ ...command, id })
      }),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000)
      await exited
      clearTimeout(timer)
    }
  }
}

const nodeArgs = (script: string, extra: ReadonlyArray<string> = []) => [
  ...extra,
  "--import",
  tsxLoader,
  `${root}${script}`
]

/** Starts a child that announces `{ready: url}` over IPC. */
const spawnAnnounced = (name: string, script: string, env: Record<string, string>) =>
  new Promise<Child>((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgs(script), {
      cwd: root,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 30 s`)), 30_000)
    child.once("exit", (code) => reject(new Error(`${name} exited (${code}) before it was ready`)))
    child.on("message", (message: { ready?: string }) => {
      if (message.ready === undefined) return
      clearTimeout(timer)
      resolve(withIpc(name, child, message.ready))
    })
  })

export interface Upstream extends Child {
  readonly set: (options: TgiRuntimeOptions) => Promise<void>
}

export const startUpstream = async (): Promise<Upstream> => {
  const child = await spawnAnnounced("upstream", "bench/upstream.ts", {})
  return { ...child, set: (options) => child.ask<unknown>({ set: options }).then(() => undefined) }
}

export const startBare = (upstreamUrl: string, systemPrompt: string, maxNewTokens: number) =>
  spawnAnnounced("bare proxy", "bench/bare.ts", {
    BARE_UPSTREAM: upstreamUrl,
    BARE_SYSTEM_PROMPT: systemPrompt,
    BARE_MAX_NEW_TOKENS: String(maxNewTokens)
  })

export interface Nexxi extends Child {
  readonly memory: () => Promise<ProbeMemory>
  /** A CPU profile of what runs between `startProfile` and `stopProfile(file)`, written to `file`. */
  readonly startProfile: () => Promise<void>
  readonly stopProfile: (file: string) => Promise<void>
  readonly logFile: string
}

/**
 * Nexxi as `npm start` runs it (`src/main.ts` through tsx), with the probe preloaded. Its JSON log lines go to a
 * file, as they would in production (to a collector): writing them is part of what Nexxi costs.
 */
export const startNexxi = async (options: {
  readonly port: number
  readonly env: Record<string, string>
  readonly logFile: string
}): Promise<Nexxi> => {
  const log = openSync(options.logFile, "a")
  const child = spawn(
    process.execPath,
    ["--expose-gc", "--import", tsxLoader, "--import", `${root}bench/probe.ts`, `${root}src/main.ts`],
    {
      cwd: root,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        HOST: "127.0.0.1",
        PORT: String(options.port),
        ...options.env
      },
      stdio: ["ignore", log, log, "ipc"]
    }
  )
  const url = `http://127.0.0.1:${options.port}`
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  const deadline = Date.now() + 60_000
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(
        `Nexxi exited (${child.exitCode}) at start-up:\n${readFileSync(options.logFile, "utf8").slice(-2000)}`
      )
    }
    const ready = await fetch(`${url}/ready`).then(
      (response) => response.ok,
      () => false
    )
    if (ready) break
    if (Date.now() > deadline) throw new Error(`Nexxi was not ready within 60 s (log: ${options.logFile})`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  void exited
  const child_ = withIpc("nexxi", child, url)
  return {
    ...child_,
    logFile: options.logFile,
    memory: () => child_.ask<{ memory: ProbeMemory }>({ op: "memory" }).then((answer) => answer.memory),
    startProfile: () => child_.ask<unknown>({ op: "profile-start" }).then(() => undefined),
    stopProfile: (file) => child_.ask<unknown>({ op: "profile-stop", file }).then(() => undefined)
  }
}

/** A free loopback port. */
export const freePort = async (): Promise<number> => {
  const { createServer } = await import("node:net")
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}
