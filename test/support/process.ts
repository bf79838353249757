/** Runs Nexxi as a real process (`src/main.ts` through tsx), as `npm start` does, on a free loopback port. */
import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:net"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))
// Node itself with tsx's loader, rather than the `tsx` wrapper: a signal then reaches Nexxi directly, and killing
// the process leaves no child behind.
const tsxLoader = pathToFileURL(`${root}node_modules/tsx/dist/loader.mjs`).href
const main = `${root}src/main.ts`

export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })

export interface NexxiProcess {
  readonly url: string
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  /** Resolves when the output (stdout + stderr) contains the text. */
  readonly waitForOutput: (text: string, timeoutMs?: number) => Promise<void>
  readonly exited: Promise<number | null>
}

export const spawnNexxi = async (
  env: Record<string, string>,
  options: { cwd?: string } = {}
): Promise<NexxiProcess> => {
  const port = env.PORT ?? String(await freePort())
  const child = spawn(process.execPath, ["--import", tsxLoader, main], {
    cwd: options.cwd ?? root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, HOST: "127.0.0.1", PORT: port, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  const listeners = new Set<() => void>()
  const notify = () => listeners.forEach((listener) => listener())
  child.stdout!.on("data", (chunk) => ((stdout += chunk), notify()))
  child.stderr!.on("data", (chunk) => ((stderr += chunk), notify()))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => (notify(), resolve(code))))
  const waitForOutput = (text: string, timeoutMs = 20_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if ((stdout + stderr).includes(text)) {
          listeners.delete(check)
          clearTimeout(timer)
          resolve()
        } else if (child.exitCode !== null) {
          listeners.delete(check)
          clearTimeout(timer)
          reject(new Error(`exited (${child.exitCode}) before printing "${text}":\n${stdout}\n${stderr}`))
        }
      }
      const timer = setTimeout(() => {
        listeners.delete(check)
        reject(new Error(`no "${text}" within ${timeoutMs} ms:\n${stdout}\n${stderr}`))
      }, timeoutMs)
      listeners.add(check)
      check()
    })
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    waitForOutput,
    exited
  }
}
