/**
 * Personal data in text: e-mail addresses, phone numbers, US social security numbers, payment card numbers, IBANs and
 * IP addresses — found as spans, so they can be replaced by typed placeholders (`[EMAIL]`, `[PHONE]`...). Secrets
 * (API keys, tokens, private keys, passwords in URLs) live in Secrets.ts and share the span type and the redaction.
 *
 * Each detector finds candidates with a cheap linear scan and then validates them (checksums, number ranges, phone
 * metadata from libphonenumber-js, the surrounding words), because shapes alone are ambiguous: order numbers, dates,
 * version strings and prices look like phone or card numbers.
 *
 * Linear time: candidate patterns repeat one character class or a fixed-width group with a bounded count, and the
 * hand-written scanners never revisit a character more than a bounded number of times.
 */
import { parsePhoneNumberFromString, type CountryCode } from "libphonenumber-js"
import { isIPv6 } from "node:net"

export type PiiType = "email" | "phone" | "us_ssn" | "credit_card" | "iban" | "ip_address" | "secret"

export interface PiiSpan {
  readonly type: PiiType
  readonly start: number
  readonly end: number
}

export const placeholders: Readonly<Record<PiiType, string>> = {
  email: "[EMAIL]",
  phone: "[PHONE]",
  us_ssn: "[SSN]",
  credit_card: "[CREDIT_CARD]",
  iban: "[IBAN]",
  ip_address: "[IP_ADDRESS]",
  secret: "[SECRET]"
}

const isDigit = (char: string | undefined) => char !== undefined && char >= "0" && char <= "9"
const isAsciiAlnum = (char: string | undefined) =>
  char !== undefined && ((char >= "0" && char <= "9") || (char >= "a" && char <= "z") || (char >= "A" && char <= "Z"))
const isWordChar = (char: string | undefined) => char !== undefined && (isAsciiAlnum(char) || char === "_")

/** The words within `radius` characters before `start` (and `after` characters after `end`), lower-cased. */
const around = (text: string, start: number, end: number, radius: number, after = 0) =>
  (text.slice(Math.max(0, start - radius), start) + " " + text.slice(end, end + after)).toLowerCase()

// --- E-mail ------------------------------------------------------------------------------------------------------

const isLocalChar = (char: string | undefined) =>
  char !== undefined && (isAsciiAlnum(char) || "._%+-'".includes(char) || char.charCodeAt(0) > 0x7f)
const isDomainChar = (char: string | undefined) =>
  char !== undefined && (isAsciiAlnum(char) || char === "-" || char === ".")

/** "scheme://user:password@host": the part before "@" belongs to a URL (a secret, if anything), not an address. */
const isUrlUserinfo = (text: string, start: number): boolean => {
  const before = text.slice(Math.max(0, start - 256), start)
  const scheme = before.lastIndexOf("://")
  return scheme !== -1 && !/\s/.test(before.slice(scheme))
}

/** From each `@`, the local part to its left (at most 64 characters) and the domain to its right (at most 253). */
export const findEmails = (text: string): Array<PiiSpan> => {
  const spans: Array<PiiSpan> = []
  for (let at = text.indexOf("@"); at !== -1; at = text.indexOf("@", at + 1)) {
    let start = at
    while (start > 0 && at - start < 64 && isLocalChar(text[start - 1])) start--
    while (start < at && (text[start] === "." || text[start] === "'")) start++
    let end = at + 1
    while (end < text.length && end - at <= 253 && isDomainChar(text[end])) end++
    while (end > at + 1 && (text[end - 1] === "." || text[end - 1] === "-")) end--
    if (start === at || end === at + 1) continue
    const labels = text.slice(at + 1, end).split(".")
    const tld = labels.at(-1)!
    if (labels.length < 2 || labels.some((label) => label.length === 0 || label.length > 63)) continue
    if (!/^[a-zA-Z]{2,24}$/.test(tld) || isUrlUserinfo(text, start)) continue
    spans.push({ type: "email", start, end })
  }
  return spans
}

// --- US social security numbers ------------------------------------------------------------------------------------

const SSN = /(?<![\w-])([0-9]{3})([- ]?)([0-9]{2})\2([0-9]{4})(?![\w-])/g
const SSN_CONTEXT = /\b(?:ssn|ss#|social security|social sec|sozialversicherungs)/

/** Area 000, 666 and 900-999, group 00 and serial 0000 were never issued. */
const isPossibleSsn = (area: string, group: string, serial: string) =>
  area !== "000" && area !== "666" && area[0] !== "9" && group !== "00" && serial !== "0000"

export const findSsns = (text: string): Array<PiiSpan> => {
  const spans: Array<PiiSpan> = []
  SSN.lastIndex = 0
  for (let match = SSN.exec(text); match !== null; match = SSN.exec(text)) {
    const [whole, area, separator, group, serial] = match as unknown as [string, string, string, string, string]
    if (!isPossibleSsn(area, group, serial)) continue
    const end = match.index + whole.length
    // Nine bare digits are an SSN only when the words around say so.
    if (separator === "" && !SSN_CONTEXT.test(around(text, match.index, end, 48, 16))) continue
    spans.push({ type: "us_ssn", start: match.index, end })
  }
  return spans
}

// --- Payment cards -------------------------------------------------------------------------------------------------

/** 12-19 digits, optionally in groups separated by single blanks or hyphens. */
const CARD = /(?<![\w.,-])[0-9](?:[ -]?[0-9]){11,18}(?![\w-]|[.,][0-9])/g

export const luhn = (digits: string): boolean => {
  let sum = 0
  for (let index = 0; index < digits.length; index++) {
    let digit = digits.charCodeAt(digits.length - 1 - index) - 48
    if (index % 2 === 1) {
      digit *= 2
      if (digit > 9) digit -= 9
    }
    sum += digit
  }
  return sum % 10 === 0
}

/** Issuer prefixes and lengths of the card networks (Visa, Mastercard, Amex, Discover, JCB, Diners, Maestro, UnionPay, Mir). */
const plausibleIssuer = (digits: string): boolean => {
  const length = digits.length
  const two = Number(digits.slice(0, 2))
  const four = Number(digits.slice(0, 4))
  if (digits[0] === "4") return length === 13 || length === 16 || length === 19
  if ((two >= 51 && two <= 55) || (four >= 2221 && four <= 2720)) return length === 16
  if (two === 34 || two === 37) return length === 15
  if (four === 2131 || four === 1800) return length === 15
  if (two === 35) return length >= 16 && length <= 19
  if (two === 36 || two === 38 || two === 39 || (two === 30 && Number(digits[2]) <= 5))
    return length >= 14 && length <= 19
  if (four >= 2200 && four <= 2204) return length >= 16 && length <= 19
  if (digits[0] === "6" || two === 50 || (two >= 56 && two <= 58) || four === 604) return length >= 12 && length <= 19
  return false
}

export const isCardNumber = (digits: string): boolean =>
  digits.length >= 12 && digits.length <= 19 && !/^(\d)\1+$/.test(digits) && plausibleIssuer(digits) && luhn(digits)

export const findCards = (text: string): Array<PiiSpan> => {
  const spans: Array<PiiSpan> = []
  CARD.lastIndex = 0
  for (let match = CARD.exec(text); match !== null; match = CARD.exec(text)) {
    const separators = new Set(match[0].replace(/[0-9]/g, ""))
    if (separators.size > 1) continue
    if (isCardNumber(match[0].replace(/[ -]/g, ""))) {
      spans.push({ type: "credit_card", start: match.index, end: match.index + match[0].length })
    }
  }
  return spans
}

// --- IBAN ----------------------------------------------------------------------------------------------------------

/** IBAN length by country (SWIFT IBAN registry), for every country that issues them. */
const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BI: 27, BR: 29, BY: 28, CH: 21, CR: 22,
  CY: 28, CZ: 24, DE: 22, DJ: 27, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18, FK: 18, FO: 18, FR: 27, GB: 22,
  GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HN: 28, HR: 21, HU: 28, IE: 22, IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30,
  KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20, LU: 20, LV: 21, LY: 25, MC: 27, MD: 24, ME: 22, MK: 19, MN: 20,
  MR: 27, MT: 31, MU: 30, NI: 28, NL: 18, NO: 15, OM: 23, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29, RO: 24, RS: 22,
  RU: 33, SA: 24, SC: 31, SD: 18, SE: 24, SI: 19, SK: 24, SM: 27, SO: 23, ST: 25, SV: 28, TL: 23, TN: 24, TR: 26,
  UA: 29, VA: 22, VG: 24, XK: 20, YE: 30
} // prettier-ignore

/** Compact ("GB82WEST12345698765432") or printed in groups of four ("GB82 WEST 1234 5698 7654 32"). */
const IBAN =
  /(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?)(?![A-Za-z0-9])/g

/** ISO 13616: move the first four characters to the end, letters to numbers, and the remainder mod 97 must be 1. */
export const isIban = (candidate: string): boolean => {
  const iban = candidate.replace(/ /g, "").toUpperCase()
  if (IBAN_LENGTHS[iban.slice(0, 2)] !== iban.length) return false
  const rearranged = iban.slice(4) + iban.slice(0, 4)
  let remainder = 0
  for (const char of rearranged) {
    const value = char >= "A" ? char.charCodeAt(0) - 55 : char.charCodeAt(0) - 48
    remainder = value > 9 ? (remainder * 100 + value) % 97 : (remainder * 10 + value) % 97
  }
  return remainder === 1
}

export const findIbans = (text: string): Array<PiiSpan> => {
  const spans: Array<PiiSpan> = []
  IBAN.lastIndex = 0
  for (let match = IBAN.exec(text); match !== null; match = IBAN.exec(text)) {
    if (isIban(match[0])) spans.push({ type: "iban", start: match.index, end: match.index + match[0].length })
  }
  return spans
}

// --- IP addresses --------------------------------------------------------------------------------------------------

const IPV4 = /(?<![\w.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w]|\.[0-9])/g
/** Hex digits, colons and dots (for IPv4-mapped addresses). */
const isIpv6Char = (char: string | undefined) =>
  char !== undefined &&
  (isDigit(char) || char === ":" || char === "." || (char >= "a" && char <= "f") || (char >= "A" && char <= "F"))

const isIpv4 = (candidate: string) =>
  candidate.split(".").every((octet) => Number(octet) <= 255 && (octet.length === 1 || octet[0] !== "0"))

/** Loopback and "any" addresses name this machine, never a person: log lines like "Listening on" keep them. */
const isMachineAddress = (candidate: string) =>
  candidate.startsWith("127.") || candidate === "0.0.0.0" || candidate === "::1" || candidate === "::"

export const findIpAddresses = (text: string): Array<PiiSpan> => {
  const spans: Array<PiiSpan> = []
  // IPv6: from each colon not yet inside a candidate, the run of hex digits, colons and dots around it.
  let scannedTo = 0
  for (let colon = text.indexOf(":"); colon !== -1; colon = text.indexOf(":", Math.max(colon + 1, scannedTo))) {
    let start = colon
    while (start > scannedTo && colon - start < 45 && isIpv6Char(text[start - 1])) start--
    let end = colon + 1
    while (end < text.length && end - start < 45 && isIpv6Char(text[end])) end++
    scannedTo = end
    if (isWordChar(text[start - 1]) || isWordChar(text[end])) continue
    const candidate = text.slice(start, end).replace(/\.$/, "")
    if (candidate.split(":").length < 3 || !/[0-9a-fA-F]/.test(candidate) || !isIPv6(candidate)) continue
    if (isMachineAddress(candidate)) continue
    spans.push({ type: "ip_address", start, end: start + candidate.length })
  }
  IPV4.lastIndex = 0
  for (let match = IPV4.exec(text); match !== null; match = IPV4.exec(text)) {
    // Unless it is the tail of an IPv6 address found above ("::ffff:192.0.2.1").
    const inside = spans.some((span) => span.start <= match.index && span.end >= match.index + match[0].length)
    if (isIpv4(match[0]) && !inside && !isMachineAddress(match[0])) {
      spans.push({ type: "ip_address", start: match.index, end: match.index + match[0].length })
    }
  }
  return spans.sort((a, b) => a.start - b.start)
}

// --- Phone numbers -------------------------------------------------------------------------------------------------

export interface PhoneOptions {
  /**
   * Countries whose national formats are accepted for numbers written without a country code, tried in order with
   * libphonenumber-js. Numbers with `+` or `00` are checked against their own country.
   */
  readonly regions: ReadonlyArray<CountryCode>
}

export const defaultPhoneRegions: ReadonlyArray<CountryCode> = ["US", "GB", "DE", "FR", "IN", "BR", "AU"]

const PHONE_CONTEXT =
  /(?:phone|messag|answering|calling|ring me|tel\b|telephone|mobile|cell|fax|call|text me|sms|whatsapp|signal|contact|reach|dial|office|desk|landline|hotline|telefon|telefono|teléfono|téléphone|portable|handy|móvil|celular|numero|número|номер|电话)/
const NOT_PHONE_CONTEXT =
  /\b(?:order|invoice|tracking|ticket|case|ref(?:erence)?|isbn|issn|serial|sku|part|model|version|build|account|acct|iban|card|ssn|social security|routing|zip|postal|postcode|lot|batch|patent|licen[cs]e|passport|suite|apt|apartment|unit|room|floor|box|id)\b[^\n\d]{0,16}$/

const isSeparator = (char: string | undefined) => char === " " || char === "." || char === "-"
const CURRENCY_BEFORE = /[$€£¥₹₽¢]\s?$/
const CURRENCY_AFTER = /^\s?(?:[$€£¥₹₽%]|(?:usd|eur|gbp|chf|jpy|inr|dollars?|euros?|pounds?)\b)/i
const EXTENSION = /^ ?(?:x|ext\.?|extension) ?[0-9]{1,6}/i

/** Day-month-year or year-month-day in one separator style: dates, not phones. */
const looksLikeDate = (groups: ReadonlyArray<string>, separators: ReadonlySet<string>) => {
  if (groups.length !== 3 || separators.size !== 1) return false
  const [a, b, c] = groups.map(Number) as [number, number, number]
  const [la, , lc] = groups.map((group) => group.length) as [number, number, number]
  if (la === 4) return b >= 1 && b <= 12 && c >= 1 && c <= 31
  return (lc === 4 || lc === 2) && a >= 1 && a <= 31 && b >= 1 && b <= 31 && (a <= 12 || b <= 12)
}

/**
 * The verdict on one phone-shaped run: its shape (groups, separators, prefix), the words around it and, last, the
 * numbering plans (libphonenumber-js). Cached per run within one call.
 */
const isPhone = (
  text: string,
  start: number,
  end: number,
  options: PhoneOptions,
  cache: Map<string, boolean>
): boolean => {
  const candidate = text.slice(start, end)
  const digits = candidate.replace(/[^0-9]/g, "")
  if (digits.length < 7 || digits.length > 15) return false
  const international = candidate.startsWith("+") || /^00[1-9]/.test(candidate)
  const groups = candidate.split(/[^0-9]+/).filter((group) => group.length > 0)
  const separators = new Set(candidate.replace(/[0-9+()]/g, "").replace(/ +/g, " "))
  // A date, or a date followed by a time ("2021-04-07 09:00"): four-digit years first or last.
  const datePrefix = groups.length > 3 && (groups[0]!.length === 4 || groups[2]!.length === 4)
  if (looksLikeDate(groups, separators) || (datePrefix && looksLikeDate(groups.slice(0, 3), new Set(["-"])))) {
    return false
  }
  if (
    separators.size === 1 &&
    separators.has(".") &&
    (groups.length === 4 ? groups.every((g) => g.length <= 3) : false)
  ) {
    return false
  }
  if (separators.has(".") && groups.some((group) => group.length === 1)) return false
  // A list of years ("1998 2004 2010") is not dialled either.
  if (groups.length > 1 && groups.every((group) => /^(?:19|20)\d\d$/.test(group))) return false
  const before = around(text, start, start, 40)
  if (CURRENCY_BEFORE.test(before) || CURRENCY_AFTER.test(text.slice(end, end + 12))) return false
  if (NOT_PHONE_CONTEXT.test(before) && !PHONE_CONTEXT.test(before.slice(-16))) return false
  const context = PHONE_CONTEXT.test(around(text, start, end, 48, 24))
  // A bare run of digits, or two groups ("704 1436", a house and street number), is an order number, an id, an
  // amount or an address unless it is dialled (+, 00, a trunk 0, an area code in parentheses) or said to be a phone.
  const dialled = international || candidate.startsWith("0") || candidate.includes("(")
  if (groups.length === 1 && !international && !context) return false
  if (groups.length === 2 && !dialled && !context) return false
  if (
    !international &&
    !context &&
    groups.some((group, index) => group.length > (index === groups.length - 1 ? 8 : 5))
  ) {
    return false
  }

  const key = (international ? "+" : "") + digits + (context ? "c" : "")
  const cached = cache.get(key)
  if (cached !== undefined) return cached
  const number = international ? "+" + digits.replace(/^00/, "") : candidate
  const possible = international
    ? parsePhoneNumberFromString(number)?.isPossible() === true
    : options.regions.some((region) => parsePhoneNumberFromString(number, region)?.isPossible() === true)
  cache.set(key, possible)
  return possible
}

/** Where a phone number can start: a digit, or "+" or "(" before one. */
const RUN_START = /[0-9]|[+(](?=[0-9])/g

/** Runs of digits, blanks, dots, hyphens and parentheses (with a leading `+`), scanned once from left to right. */
export const findPhones = (text: string, options: PhoneOptions = { regions: defaultPhoneRegions }): Array<PiiSpan> => {
  const spans: Array<PiiSpan> = []
  const cache = new Map<string, boolean>()
  RUN_START.lastIndex = 0
  for (let start = RUN_START.exec(text); start !== null; start = RUN_START.exec(text)) {
    const index = start.index
    const previous = text[index - 1]
    // Not the middle of a word, a decimal, an amount, an id ("#", "ID-"), a list of numbers or a path.
    if (previous !== undefined && (isWordChar(previous) || "+#$€£".includes(previous))) continue
    if (previous !== undefined && "./,-".includes(previous) && isWordChar(text[index - 2])) continue
    let end = index + 1
    let digits = isDigit(text[index]) ? 1 : 0
    let gap = 0
    while (end < text.length) {
      const next = text[end]!
      if (isDigit(next)) {
        digits++
        gap = 0
      } else if (isSeparator(next) || next === "(" || next === ")") {
        if (++gap > 3) break
      } else break
      end++
    }
    RUN_START.lastIndex = end
    while (end > index && !isDigit(text[end - 1]) && text[end - 1] !== ")") end--
    if (text[end - 1] === ")" && !text.slice(index, end - 1).includes("(")) end--
    const extension = EXTENSION.exec(text.slice(end, end + 16))
    const after = end + (extension?.[0].length ?? 0)
    // A run glued to letters or digits after it ("12345abc", "1.5.3.2b") is part of something else; one followed by
    // ":" and digits is a date and time ("2021-04-07 09:00:27").
    const glued = isWordChar(text[after]) || (".:".includes(text[after] ?? " ") && isDigit(text[after + 1]))
    if (glued || digits < 7 || digits > 17) continue
    if (isPhone(text, index, end, options, cache)) {
      spans.push({ type: "phone", start: index, end: after })
    }
  }
  return spans
}
