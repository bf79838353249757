/**
 * All detectors together: the spans of personal data and secrets in a text, without overlaps, and the text with each
 * span replaced by its typed placeholder ("Write to [EMAIL] or call [PHONE]").
 */
import {
  defaultPhoneRegions,
  findCards,
  findEmails,
  findIbans,
  findIpAddresses,
  findPhones,
  findSsns,
  type PhoneOptions,
  type PiiSpan,
  type PiiType,
  placeholders
} from "./Pii.js"
import { findSecrets } from "./Secrets.js"

export interface PiiOptions extends PhoneOptions {
  /** The types to find; the others are left in the text. */
  readonly types: ReadonlySet<PiiType>
}

export const allPiiTypes: ReadonlySet<PiiType> = new Set(Object.keys(placeholders) as Array<PiiType>)

export const defaultPiiOptions: PiiOptions = { types: allPiiTypes, regions: defaultPhoneRegions }

/**
 * Detectors from the most specific to the least: where spans overlap, the earlier one wins (a password in a URL is a
 * secret even if it looks like an e-mail; a card number is not also a phone number).
 */
const detectors: ReadonlyArray<{
  readonly type: PiiType
  readonly find: (text: string, options: PiiOptions) => Array<PiiSpan>
}> = [
  { type: "secret", find: findSecrets },
  { type: "email", find: findEmails },
  { type: "iban", find: findIbans },
  { type: "credit_card", find: findCards },
  { type: "us_ssn", find: findSsns },
  { type: "ip_address", find: findIpAddresses },
  { type: "phone", find: findPhones }
]

/** Every detector needs a digit, an "@" or a letter run of a token: text without them (most log lines) is skipped. */
const NEEDS_DIGIT: ReadonlySet<PiiType> = new Set(["phone", "us_ssn", "credit_card", "iban"])

/** The spans of personal data and secrets in `text`, in order, without overlaps. */
export const findPii = (text: string, options: PiiOptions = defaultPiiOptions): Array<PiiSpan> => {
  const hasDigit = /[0-9]/.test(text)
  const taken = new Uint8Array(text.length)
  const spans: Array<PiiSpan> = []
  for (const { type, find } of detectors) {
    if (!options.types.has(type)) continue
    if (NEEDS_DIGIT.has(type) && !hasDigit) continue
    if (type === "email" && !text.includes("@")) continue
    for (const span of find(text, options)) {
      let free = true
      for (let index = span.start; index < span.end && free; index++) free = taken[index] === 0
      if (!free) continue
      taken.fill(1, span.start, span.end)
      spans.push(span)
    }
  }
  return spans.sort((a, b) => a.start - b.start)
}

/** `text` with each span (in order, without overlaps) replaced by its placeholder. */
export const redactSpans = (text: string, spans: ReadonlyArray<PiiSpan>): string => {
  if (spans.length === 0) return text
  let output = ""
  let cursor = 0
  for (const span of spans) {
    output += text.slice(cursor, span.start) + placeholders[span.type]
    cursor = span.end
  }
  return output + text.slice(cursor)
}

export interface Redaction {
  readonly text: string
  readonly spans: ReadonlyArray<PiiSpan>
}

export const redactPii = (text: string, options: PiiOptions = defaultPiiOptions): Redaction => {
  const spans = findPii(text, options)
  return { text: redactSpans(text, spans), spans }
}
