/**
 * The deployment files (docker/Dockerfile, the compose stack, .dockerignore, the GitHub workflows): each passes its
 * linter or schema, offline, and keeps the properties a production deployment relies on (non-root user, health
 * check, pinned images, GPU quantized TGI, secrets only from .env...), so that none of them regresses silently.
 * No Docker engine is needed: CI builds the image and starts the stack (.github/workflows/ci.yml, job "image").
 */
import { validateWorkflow } from "@action-validator/core"
import { describe, expect, it } from "@effect/vitest"
import { DCLinter } from "dclint"
import { validate as validateDockerfile, ValidationSeverity } from "dockerfile-utils"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { parse as parseYaml } from "yaml"
import vitestConfig from "../vitest.config.js"

const root = new URL("../", import.meta.url)
const pathOf = (relative: string) => fileURLToPath(new URL(relative, root))
const read = (relative: string) => readFileSync(new URL(relative, root), "utf8")
const yaml = (relative: string): any => parseYaml(read(relative), { merge: true })

// --- Dockerfile -------------------------------------------------------------------------------------------------

interface Instruction {
  readonly keyword: string
  readonly args: string
}

interface Stage {
  readonly base: string
  readonly name: string | undefined
  readonly instructions: ReadonlyArray<Instruction>
}

/** The Dockerfile's instructions, continuation lines joined and comments dropped, grouped by build stage. */
const stagesOf = (text: string): ReadonlyArray<Stage> => {
  const instructions: Array<Instruction> = []
  let pending = ""
  for (const line of text.split("\n")) {
    const trimmed = line.trim()
    if (trimmed.startsWith("#") || (trimmed === "" && pending === "")) continue
    pending += " " + trimmed.replace(/\\$/, "")
    if (trimmed.endsWith("\\")) continue
    const [keyword, ...rest] = pending.trim().split(/\s+/)
    instructions.push({ keyword: keyword!.toUpperCase(), args: rest.join(" ") })
    pending = ""
  }
  const stages: Array<{ base: string; name: string | undefined; instructions: Array<Instruction> }> = []
  for (const instruction of instructions) {
    if (instruction.keyword === "FROM") {
      const [base, as, name] = instruction.args.split(/\s+/)
      stages.push({ base: base!, name: as?.toUpperCase() === "AS" ? name : undefined, instructions: [] })
    } else {
      stages.at(-1)?.instructions.push(instruction)
    }
  }
  return stages
}

const dockerfile = read("docker/Dockerfile")
const stages = stagesOf(dockerfile)
const runtime = stages.at(-1)!
const inRuntime = (keyword: string) => runtime.instructions.filter((instruction) => instruction.keyword === keyword)
const envOf = (stage: Stage) =>
  Object.fromEntries(
    stage.instructions
      .filter((instruction) => instruction.keyword === "ENV")
      .flatMap((instruction) => [...instruction.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)/g)])
      .map(([, name, value]) => [name!, value!.replace(/^"|"$/g, "")])
  )

/** Names that must never be set in an image or hard-coded in a compose file. */
const secretName = /SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE|CREDENTIAL/i

describe("docker/Dockerfile", () => {
  it("passes dockerfile-utils' linter with every check an error", () => {
    const everyCheck = {
      deprecatedMaintainer: ValidationSeverity.ERROR,
      directiveCasing: ValidationSeverity.ERROR,
      emptyContinuationLine: ValidationSeverity.ERROR,
      instructionCasing: ValidationSeverity.ERROR,
      instructionCmdMultiple: ValidationSeverity.ERROR,
      instructionEntrypointMultiple: ValidationSeverity.ERROR,
      instructionHealthcheckMultiple: ValidationSeverity.ERROR,
      instructionJSONInSingleQuotes: ValidationSeverity.ERROR,
      instructionWorkdirRelative: ValidationSeverity.ERROR
    }
    const problems = validateDockerfile(dockerfile, everyCheck).map(
      (problem) => `line ${problem.range.start.line + 1}: ${problem.message}`
    )
    expect(problems).toEqual([])
    // The linter does find problems (it is not silently passing everything).
    expect(validateDockerfile("FROM node:22\nworkdir app\nCMD ['node']\n", everyCheck).length).toBe(3)
  })

  it("builds from Node LTS pinned to a release, in several stages", () => {
    const stageNames = new Set(stages.flatMap((stage) => (stage.name === undefined ? [] : [stage.name])))
    expect(stages.length).toBeGreaterThanOrEqual(2)
    for (const stage of stages) {
      if (stageNames.has(stage.base)) continue
      const version = /^node:(\d+)\.(\d+)\.(\d+)-[a-z]+(-slim)?$/.exec(stage.base)
      expect(version, `FROM ${stage.base} is not node:<major>.<minor>.<patch>-<debian>`).not.toBeNull()
      // An LTS line (even major) that runs the code: Node 20 or newer.
      expect(Number(version![1]) % 2).toBe(0)
      expect(Number(version![1])).toBeGreaterThanOrEqual(20)
    }
  })

  it("compiles with every dependency and ships production dependencies only", () => {
    const runs = (stage: Stage) =>
      stage.instructions.filter((instruction) => instruction.keyword === "RUN").map(({ args }) => args)
    const stageBy = (name: string) => stages.find((stage) => stage.name === name)!
    const copiedFrom = (target: string) =>
      inRuntime("COPY")
        .map(({ args }) => /--from=(\S+)\s+(\S+)\s+(\S+)/.exec(args))
        .find((match) => match !== null && match[3]!.replace(/^\.\//, "/app/").startsWith(target))?.[1]

    const buildStage = stageBy(copiedFrom("/app/dist")!)
    expect(runs(buildStage).some((run) => /\bnpm ci\b/.test(run) && !run.includes("--omit=dev"))).toBe(true)
    expect(runs(buildStage).some((run) => /\bnpm run build\b/.test(run))).toBe(true)

    const depsStage = stageBy(copiedFrom("/app/node_modules")!)
    expect(runs(depsStage).some((run) => /\bnpm ci\b.*--omit=dev/.test(run))).toBe(true)
    // The runtime stage installs nothing itself.
    expect(runs(runtime).some((run) => /\bnpm (ci|install)\b/.test(run))).toBe(false)
  })

  it("runs as the non-root user nexxi, UID 1001", () => {
    const users = inRuntime("USER").map(({ args }) => args)
    expect(users.length).toBeGreaterThan(0)
    expect(users.at(-1)).toMatch(/^(1001|nexxi)(:(1001|nexxi))?$/)
    const creation = inRuntime("RUN").find(({ args }) => /\buseradd\b/.test(args))?.args ?? ""
    expect(creation).toMatch(/--uid 1001\b/)
    expect(creation).toMatch(/\bnexxi\s*(&&|$)/)
    // The data directory is the one place nexxi may write.
    const env = envOf(runtime)
    expect(creation).toContain(`chown nexxi:nexxi ${env.DATA_DIR}`)
  })

  it("listens on 0.0.0.0:8000 in production mode", () => {
    const env = envOf(runtime)
    expect(env).toMatchObject({ HOST: "0.0.0.0", PORT: "8000", APP_ENV: "production" })
    expect(env.DATA_DIR).toMatch(/^\//)
    expect(inRuntime("EXPOSE").map(({ args }) => args)).toEqual(["8000"])
  })

  it("checks /health with node itself, in exec form", () => {
    const [healthcheck, ...more] = inRuntime("HEALTHCHECK")
    expect(more).toEqual([])
    const command = /\bCMD\s+(\[.*\])$/.exec(healthcheck!.args)
    expect(command, "HEALTHCHECK CMD must be a JSON array").not.toBeNull()
    const argv: Array<string> = JSON.parse(command![1]!)
    expect(argv[0]).toBe("node")
    expect(argv.join(" ")).toContain("/health")
    expect(healthcheck!.args).toMatch(/--start-period=\d+s/)
  })

  it("starts node directly (exec form), so that SIGTERM reaches Nexxi", () => {
    expect(inRuntime("CMD").map(({ args }) => JSON.parse(args))).toEqual([["node", "dist/main.js"]])
    expect(inRuntime("ENTRYPOINT")).toEqual([])
  })

  it("bakes in no secret and no .env", () => {
    for (const stage of stages) {
      for (const { keyword, args } of stage.instructions) {
        if (keyword === "ENV" || keyword === "ARG") {
          for (const [, name] of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)(=|\s|$)/g)) {
            expect(name, `${keyword} ${args}`).not.toMatch(secretName)
          }
        }
        if (keyword === "COPY" || keyword === "ADD") {
          const sources = args
            .split(/\s+/)
            .filter((word) => !word.startsWith("--"))
            .slice(0, -1)
          expect(sources, `${keyword} ${args}`).not.toContain(".")
          expect(sources.some((source) => /(^|\/)\.env/.test(source))).toBe(false)
        }
      }
    }
  })
})

describe(".dockerignore", () => {
  const patterns = read(".dockerignore")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
  const ignored = (path: string) =>
    patterns.some((pattern) => !pattern.startsWith("!") && pattern.replace(/^\/|\/$/g, "") === path)

  it("keeps secrets, local state and build output out of the build context", () => {
    for (const path of [".env", "node_modules", "data", ".git", "dist", "coverage", "test-artifacts"]) {
      expect(ignored(path), path).toBe(true)
    }
  })

  it("keeps what the image is built from", () => {
    const sources = stages
      .flatMap((stage) => stage.instructions)
      .filter(({ keyword, args }) => keyword === "COPY" && !args.includes("--from="))
      .flatMap(({ args }) => args.split(/\s+/).slice(0, -1))
    expect(sources).toEqual(expect.arrayContaining(["package.json", "package-lock.json", "src"]))
    for (const source of sources) {
      expect(ignored(source), source).toBe(false)
      expect(existsSync(pathOf(source)), source).toBe(true)
    }
  })
})

// --- Compose ----------------------------------------------------------------------------------------------------

const composeFiles = ["docker/docker-compose.yml", "docker/docker-compose.cpu.yml"] as const
const compose = yaml("docker/docker-compose.yml")
const cpu = yaml("docker/docker-compose.cpu.yml")
const services: Record<string, any> = compose.services
const service = (name: string) => services[name]!

/** A compose duration ("30s", "1h30m") in seconds. */
const seconds = (duration: string) =>
  [...duration.matchAll(/(\d+)(h|m|s)/g)].reduce(
    (total, [, amount, unit]) => total + Number(amount) * { h: 3600, m: 60, s: 1 }[unit as "h" | "m" | "s"],
    0
  )

/** A `${NAME}` / `${NAME:?message}` / `${NAME:-default}` interpolation and nothing else. */
const interpolation = /^\$\{([A-Z_][A-Z0-9_]*)(:?[?-][^}]*)?\}$/

/** Every `environment` entry of every service of a compose file, as [service, name, value]. */
const environmentOf = (file: any): Array<[string, string, unknown]> =>
  Object.entries<any>(file.services).flatMap(([name, definition]) =>
    Object.entries<unknown>(definition.environment ?? {}).map(([variable, value]): [string, string, unknown] => [
      name,
      variable,
      value
    ])
  )

/** The published ports of a service, in long form. */
const portsOf = (definition: any): Array<{ host_ip?: string; published: string; target: string }> =>
  (definition.ports ?? []).map((port: any) => {
    if (typeof port !== "string") {
      return { host_ip: port.host_ip, published: String(port.published), target: String(port.target) }
    }
    const parts = port.split(":")
    const [target, published, hostIp] = [parts.at(-1)!, parts.at(-2)!, parts.at(-3)]
    return hostIp === undefined ? { published, target } : { host_ip: hostIp, published, target }
  })

/** The bind mounts of a service as [host path relative to docker/, container path]. */
const bindMounts = (definition: any): Array<[string, string]> =>
  (definition.volumes ?? [])
    .filter((volume: unknown) => typeof volume === "string" && volume.startsWith("."))
    .map((volume: string) => volume.split(":").slice(0, 2) as [string, string])

describe("docker/docker-compose.yml", () => {
  it("passes dclint: the Compose specification's schema and the linter's rules (.dclintrc.json)", () => {
    const config = JSON.parse(read(".dclintrc.json"))
    const linter = new DCLinter({ quiet: false, debug: false, exclude: [], ...config })
    // dclint's declarations do not resolve under NodeNext (extensionless imports): the result's shape, written out.
    const results: ReadonlyArray<{
      filePath: string
      messages: ReadonlyArray<{ line: number; rule: string; message: string }>
    }> = linter.lintFiles(
      composeFiles.map((file) => pathOf(file)),
      false
    )
    expect(results.map((result) => result.filePath)).toEqual(composeFiles.map((file) => pathOf(file)))
    const problems = results.flatMap((result) =>
      result.messages.map((message) => `${result.filePath}:${message.line} ${message.rule}: ${message.message}`)
    )
    expect(problems).toEqual([])
  })

  it("runs Nexxi, TGI, Redis, PostgreSQL, Prometheus and Grafana", () => {
    expect(Object.keys(services).sort()).toEqual(["grafana", "nexxi", "postgres", "prometheus", "redis", "tgi"])
  })

  it("pins every image to a version; Nexxi is built from docker/Dockerfile", () => {
    for (const [name, definition] of Object.entries<any>(services)) {
      if (definition.build !== undefined) continue
      expect(definition.image, name).toMatch(/:v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?$/)
    }
    expect(service("nexxi").build).toEqual({ context: "..", dockerfile: "docker/Dockerfile" })
    expect(service("redis").image).toMatch(/^redis:7\./)
    expect(service("postgres").image).toMatch(/^postgres:16\./)
    expect(service("tgi").image).toMatch(/^ghcr\.io\/huggingface\/text-generation-inference:\d/)
  })

  it("serves a 4-bit NF4 Mistral from TGI on a reserved GPU, keeping the weights in a volume", () => {
    const tgi = service("tgi")
    const command: Array<string> = tgi.command
    expect(command[command.indexOf("--quantize") + 1]).toBe("bitsandbytes-nf4")
    expect(command[command.indexOf("--model-id") + 1]).toBe("${HF_MODEL_NAME:-mistralai/Mistral-7B-Instruct-v0.3}")
    expect(tgi.deploy.resources.reservations.devices).toEqual(
      expect.arrayContaining([expect.objectContaining({ driver: "nvidia", capabilities: ["gpu"] })])
    )
    expect(tgi.environment).toHaveProperty("HF_TOKEN")
    expect(tgi.volumes).toContain("tgi-data:/data")
    expect(tgi.shm_size).toBeDefined()
    expect(tgi.healthcheck.test.join(" ")).toContain("/health")
    expect(seconds(tgi.healthcheck.start_period)).toBeGreaterThanOrEqual(10 * 60)
  })

  it("gives Nexxi its backing services by their compose names, and port 8000", () => {
    const nexxi = service("nexxi")
    expect(nexxi.environment).toMatchObject({
      APP_ENV: "production",
      HOST: "0.0.0.0",
      PORT: "8000",
      TGI_URL: "http://tgi:80"
    })
    expect(nexxi.environment.REDIS_URL).toMatch(/^redis:\/\/redis:6379(\/\d+)?$/)
    expect(nexxi.environment.DATABASE_URL).toMatch(
      /^postgres:\/\/nexxi:\$\{POSTGRES_PASSWORD(:\?[^}]*)?\}@postgres:5432\/nexxi$/
    )
    expect(nexxi.environment.DATA_DIR).toBe(envOf(runtime).DATA_DIR)
    expect(portsOf(nexxi)).toEqual([expect.objectContaining({ published: "8000", target: "8000" })])
    // Longer than Nexxi's default drain (SHUTDOWN_GRACE_MS, 10 s), so that Docker does not kill it mid-drain.
    expect(seconds(nexxi.stop_grace_period)).toBeGreaterThan(10)
  })

  it("forwards every setting Nexxi reads, so that .env can set it", () => {
    const settings = new Set([...read("src/AppConfig.ts").matchAll(/"([A-Z][A-Z0-9_]{2,})"/g)].map(([, name]) => name!))
    expect(settings.size).toBeGreaterThan(20)
    const forwarded = new Set(Object.keys(service("nexxi").environment))
    // Not needed by Nexxi next to the stack's own TGI; the CPU variant forwards them for other backends.
    const cpuOnly = ["HF_TOKEN", "TGI_API_KEY"]
    const missing = [...settings].filter((name) => !forwarded.has(name) && !cpuOnly.includes(name))
    expect(missing, "add them to services.nexxi.environment in docker/docker-compose.yml").toEqual([])
    expect(Object.keys(cpu.services.nexxi.environment)).toEqual(expect.arrayContaining(cpuOnly))
  })

  it("waits for healthy dependencies, each of which has a health check", () => {
    const healthChecked = (name: string) => name === "nexxi" || service(name).healthcheck !== undefined
    expect(service("nexxi").depends_on).toMatchObject({
      postgres: { condition: "service_healthy" },
      redis: { condition: "service_healthy" },
      tgi: { required: false }
    })
    expect(service("grafana").depends_on).toEqual({ prometheus: { condition: "service_healthy" } })
    for (const [name, definition] of Object.entries<any>(services)) {
      for (const [dependency, condition] of Object.entries<any>(definition.depends_on ?? {})) {
        expect(services, `${name} depends on ${dependency}`).toHaveProperty(dependency)
        if (condition.condition === "service_healthy") expect(healthChecked(dependency), dependency).toBe(true)
      }
    }
    expect(service("postgres").healthcheck.test).toContain("pg_isready")
  })

  it("takes every secret from .env: no literal password, key or token", () => {
    for (const [name, variable, value] of environmentOf(compose)) {
      if (!secretName.test(variable) || value === null) continue
      expect(value, `${name}.${variable}`).toMatch(interpolation)
    }
    expect(service("postgres").environment.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD/)
    expect(service("grafana").environment.GF_SECURITY_ADMIN_PASSWORD).toMatch(/^\$\{GRAFANA_PASSWORD/)
    // No credentials written into a URL either, anywhere in either file.
    for (const file of composeFiles) {
      for (const [, credential] of read(file).matchAll(/:\/\/[^/\s:@]+:([^@\s]+)@/g)) {
        expect(credential, file).toMatch(interpolation)
      }
    }
  })

  it("publishes Grafana on 3001 and Prometheus on 9090, on the loopback interface only", () => {
    expect(portsOf(service("grafana"))).toEqual([{ host_ip: "127.0.0.1", published: "3001", target: "3000" }])
    expect(portsOf(service("prometheus"))).toEqual([{ host_ip: "127.0.0.1", published: "9090", target: "9090" }])
    for (const internal of ["redis", "postgres", "tgi"]) expect(service(internal).ports, internal).toBeUndefined()
  })

  it("wires in the Prometheus configuration and Grafana's provisioning and dashboards", () => {
    const prometheus = service("prometheus")
    expect(bindMounts(prometheus)).toContainEqual(["./prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml"])
    expect(prometheus.command).toContain("--config.file=/etc/prometheus/prometheus.yml")
    expect(bindMounts(service("grafana"))).toEqual(
      expect.arrayContaining([
        ["./grafana/provisioning", "/etc/grafana/provisioning"],
        ["./grafana/dashboards", "/var/lib/grafana/dashboards"]
      ])
    )
    for (const [name, definition] of Object.entries<any>(services)) {
      for (const [host] of bindMounts(definition))
        expect(existsSync(pathOf(`docker/${host}`)), `${name}: ${host}`).toBe(true)
    }
    // What Prometheus scrapes and where Grafana finds Prometheus are services of this stack.
    const scraped = yaml("docker/prometheus/prometheus.yml").scrape_configs.flatMap((job: any) =>
      job.static_configs.flatMap((config: any) => config.targets)
    )
    expect(scraped.sort()).toEqual(["nexxi:8000", "tgi:80"])
    const datasource = yaml("docker/grafana/provisioning/datasources/prometheus.yml").datasources[0]
    expect(datasource.url).toBe("http://prometheus:9090")
    const provider = yaml("docker/grafana/provisioning/dashboards/nexxi.yml").providers[0]
    expect(provider.options.path).toBe("/var/lib/grafana/dashboards")
    expect(service("grafana").environment.GF_SECURITY_ADMIN_USER).toBe("admin")
  })
})

describe("docker/docker-compose.cpu.yml", () => {
  it("leaves TGI out and answers with the echo generator unless .env chooses another backend", () => {
    expect(cpu.services.tgi).toEqual({ profiles: ["gpu"] })
    expect(cpu.services.nexxi.environment.GENERATOR).toBe("${GENERATOR:-echo}")
    // Only the base file's required: false on tgi lets compose start Nexxi without it.
    expect(service("nexxi").depends_on.tgi.required).toBe(false)
    expect(Object.keys(cpu.services).sort()).toEqual(["nexxi", "tgi"])
  })
})

// --- GitHub workflows -------------------------------------------------------------------------------------------

const workflowFiles = readdirSync(new URL(".github/workflows/", root)).filter((file) => /\.ya?ml$/.test(file))
const workflow = (file: string) => yaml(`.github/workflows/${file}`)
const stepsOf = (job: any): Array<any> => job.steps ?? []
const commands = (job: any) =>
  stepsOf(job)
    .flatMap((step) => (typeof step.run === "string" ? [step.run] : []))
    .join("\n")

describe("GitHub workflows", () => {
  it("validate against the workflow schema (action-validator)", () => {
    expect(workflowFiles).toEqual(expect.arrayContaining(["ci.yml", "release.yml"]))
    for (const file of workflowFiles) {
      expect(validateWorkflow(read(`.github/workflows/${file}`)).errors, file).toEqual([])
    }
    // The validator does reject a broken workflow.
    expect(validateWorkflow("on: push\njobs:\n  a:\n    runs-on: x\n    stepz: []\n").errors.length).toBeGreaterThan(0)
  })

  it("pin every action to a version", () => {
    for (const file of workflowFiles) {
      for (const job of Object.values<any>(workflow(file).jobs)) {
        for (const step of stepsOf(job)) {
          if (step.uses !== undefined) expect(step.uses, file).toMatch(/@(v\d+(\.\d+)*|[0-9a-f]{40})$/)
        }
      }
    }
  })

  it("CI: types, style, tests with coverage on Node 20 and 22 against Redis and PostgreSQL", () => {
    const ci = workflow("ci.yml")
    expect(Object.keys(ci.on)).toEqual(expect.arrayContaining(["push", "pull_request"]))
    const test = ci.jobs.test
    expect(test.strategy.matrix.node).toEqual(expect.arrayContaining([20, 22]))
    expect(test.services.redis.options).toContain("--health-cmd")
    expect(test.services.postgres.options).toContain("--health-cmd")
    expect(test.env).toMatchObject({ CI: "true" })
    expect(test.env.REDIS_URL).toMatch(/^redis:\/\//)
    expect(test.env.DATABASE_URL).toMatch(/^postgres:\/\//)
    const run = commands(test)
    for (const command of ["npm ci", "npm run typecheck", "npm run lint", "npm run test:coverage"]) {
      expect(run).toContain(command)
    }
  })

  it("CI: enforces 80 % line coverage, audits dependencies, runs CodeQL and builds the image", () => {
    const packageJson = JSON.parse(read("package.json"))
    expect(packageJson.scripts["test:coverage"]).toMatch(/vitest run .*--coverage/)
    expect(vitestConfig.test?.coverage?.provider).toBe("v8")
    expect((vitestConfig.test?.coverage as any)?.thresholds?.lines).toBeGreaterThanOrEqual(80)

    const { jobs } = workflow("ci.yml")
    expect(Object.values<any>(jobs).map(commands).join("\n")).toContain("npm audit --audit-level=high")
    const codeql = stepsOf(jobs.codeql)
    expect(codeql.find((step) => step.uses?.startsWith("github/codeql-action/init@"))?.with.languages).toBe(
      "javascript-typescript"
    )
    expect(codeql.some((step) => step.uses?.startsWith("github/codeql-action/analyze@"))).toBe(true)
    expect(jobs.codeql.permissions["security-events"]).toBe("write")
    const build = stepsOf(jobs.image).find((step) => step.uses?.startsWith("docker/build-push-action@"))
    expect(build.with).toMatchObject({ file: "docker/Dockerfile", push: false })
  })

  it("Release: pushes the image to GHCR on v* tags", () => {
    const release = workflow("release.yml")
    expect(release.on.push.tags).toEqual(["v*"])
    const [job] = Object.values<any>(release.jobs)
    expect(job.permissions.packages).toBe("write")
    const login = stepsOf(job).find((step) => step.uses?.startsWith("docker/login-action@"))
    expect(login.with.registry).toBe("ghcr.io")
    const build = stepsOf(job).find((step) => step.uses?.startsWith("docker/build-push-action@"))
    expect(build.with).toMatchObject({ file: "docker/Dockerfile", push: true })
  })
})
