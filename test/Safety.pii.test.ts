/**
 * Personal data and secrets: each detector finds what it should, leaves alone what only looks like it (order
 * numbers, dates, versions, prices, placeholders), and redaction puts typed placeholders in their place.
 */
import { describe, expect, it } from "@effect/vitest"
import { findIpAddresses, isCardNumber, isIban, luhn } from "../src/Safety/Pii.js"
import { allPiiTypes, findPii, redactPii } from "../src/Safety/Redact.js"
import { isPlaceholder, secretRules } from "../src/Safety/Secrets.js"

/** The spans found, as [type, text] pairs. */
const found = (text: string) => findPii(text).map((span) => [span.type, text.slice(span.start, span.end)])
const foundOfType = (type: string, text: string) =>
  findPii(text)
    .filter((span) => span.type === type)
    .map((span) => text.slice(span.start, span.end))

describe("e-mail addresses", () => {
  it.each([
    ["write to maria.lopez+news@mail.example.co.uk today", "maria.lopez+news@mail.example.co.uk"],
    ["Contact: o.brien@sub.domain.io.", "o.brien@sub.domain.io"],
    ["<JOHN_DOE99@Example.ORG>", "JOHN_DOE99@Example.ORG"]
  ])("finds %j", (text, email) => {
    expect(foundOfType("email", text)).toEqual([email])
  })

  it.each([
    "follow us @nexxi on social media",
    "ssh root@localhost",
    "the ratio 5@3 is odd",
    "postgres://app:Sup3rS3cret@db.internal.example:5432/app"
  ])("does not take %j for an address", (text) => {
    expect(foundOfType("email", text)).toEqual([])
  })
})

describe("phone numbers", () => {
  it.each([
    ["Call +44 20 7946 0958 tomorrow.", "+44 20 7946 0958"],
    ["Our office: (415) 555-0132.", "(415) 555-0132"],
    ["Ruf mich an: 030 1234 5678", "030 1234 5678"],
    ["Tel. 06 12 34 56 78", "06 12 34 56 78"],
    ["reach me on +1-202-555-0173 ext. 12 please", "+1-202-555-0173 ext. 12"],
    ["from abroad dial 0033 1 42 68 53 00", "0033 1 42 68 53 00"],
    ["mobile: 07700900123", "07700900123"]
  ])("finds %j", (text, phone) => {
    expect(foundOfType("phone", text)).toEqual([phone])
  })

  it.each([
    "Your order #100234567 has shipped.",
    "Order number 4402 1187 93 is delayed.",
    "We met on 2024-03-15 and again on 15.03.2024.",
    "The meeting is 2024-03-15 09:30:00 UTC.",
    "Upgrade to version 12.4.1 or 2.10.3.",
    "It costs €1 234 567 or 1.234.567 €.",
    "ISBN 978-3-16-148410-0",
    "Unix time 1700000000 is in November 2023.",
    "Scores: 12 34 56",
    "The flat is at 2045 1187 Maple Street.",
    "Compare the years 1998 2004 2010."
  ])("does not take %j for a phone number", (text) => {
    expect(foundOfType("phone", text)).toEqual([])
  })
})

describe("US social security numbers", () => {
  it.each([
    ["SSN 536-22-1478 on file", "536-22-1478"],
    ["social security number: 536 22 1478", "536 22 1478"],
    ["my ssn is 536221478", "536221478"]
  ])("finds %j", (text, ssn) => {
    expect(foundOfType("us_ssn", text)).toEqual([ssn])
  })

  it.each([
    "000-12-3456",
    "666-12-3456",
    "912-34-5678",
    "123-00-4567",
    "123-45-0000",
    "reference 536221478 (no context)"
  ])("rejects %j (never issued, or no sign it is an SSN)", (text) => {
    expect(foundOfType("us_ssn", text)).toEqual([])
  })
})

describe("payment cards", () => {
  it("checks Luhn and the issuer's prefix and length", () => {
    expect(luhn("4111111111111111")).toBe(true)
    expect(luhn("4111111111111112")).toBe(false)
    expect(isCardNumber("378282246310005")).toBe(true)
    expect(isCardNumber("6011111111111117")).toBe(true)
    expect(isCardNumber("9111111111111111")).toBe(false)
    expect(isCardNumber("0000000000000000")).toBe(false)
  })

  it.each([
    ["card 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111"],
    ["MC 5500-0000-0000-0004.", "5500-0000-0000-0004"],
    ["amex 378282246310005", "378282246310005"]
  ])("finds %j", (text, card) => {
    expect(foundOfType("credit_card", text)).toEqual([card])
  })

  it.each(["card 4111 1111 1111 1112", "tracking 1234567812345678", "4111 1111-1111 1111"])(
    "rejects %j (checksum, issuer or mixed separators)",
    (text) => {
      expect(foundOfType("credit_card", text)).toEqual([])
    }
  )
})

describe("IBANs", () => {
  it("validates the mod-97 checksum and the country's length", () => {
    expect(isIban("DE89 3704 0044 0532 0130 00")).toBe(true)
    expect(isIban("DE89 3704 0044 0532 0130 01")).toBe(false)
    expect(isIban("DE89 3704 0044 0532 0130")).toBe(false)
    expect(isIban("XX12 3456 7890 1234 5678 90")).toBe(false)
  })

  it.each([
    ["pay DE89 3704 0044 0532 0130 00 now", "DE89 3704 0044 0532 0130 00"],
    ["FR1420041010050500013M02606", "FR1420041010050500013M02606"],
    ["nl91abna0417164300", "nl91abna0417164300"],
    ["CH93 0076 2011 6238 5295 7", "CH93 0076 2011 6238 5295 7"]
  ])("finds %j", (text, iban) => {
    expect(foundOfType("iban", text)).toEqual([iban])
  })
})

describe("IP addresses", () => {
  it.each([
    ["from 10.0.0.1, then", "10.0.0.1"],
    ["v6 2001:db8::8a2e:370:7334 works", "2001:db8::8a2e:370:7334"],
    ["mapped ::ffff:192.0.2.128 too", "::ffff:192.0.2.128"]
  ])("finds %j", (text, ip) => {
    expect(foundOfType("ip_address", text)).toEqual([ip])
  })

  it.each(["999.1.1.1", "version 1.2.3", "at 12:30:45", "std::vector<int>", "MAC 00:1a:2b:3c:4d:5e"])(
    "rejects %j",
    (text) => {
      expect(foundOfType("ip_address", text)).toEqual([])
    }
  )
})

describe("secrets", () => {
  it.each(secretRules.map((rule) => [rule.id, rule.example] as const))("%s: finds its own example", (_, example) => {
    const text = `config: ${example} (do not share)`
    const spans = foundOfType("secret", text)
    expect(spans.length).toBeGreaterThan(0)
    // The example's secret part is covered.
    expect(redactPii(text).text).toContain("[SECRET]")
  })

  const privateKey =
    "-----BEGIN RSA PRIVATE KEY-----\n" +
    Array.from({ length: 5 }, (_, line) => "MIIBOgIBAAJBAK" + "q3Zx8Lm2Vt7Nb4Rc9".repeat(3) + line).join("\n") +
    "\n-----END RSA PRIVATE KEY-----"

  it("finds PEM private keys, also JSON-escaped and without their END line", () => {
    expect(found(`key:\n${privateKey}\nthanks`)).toEqual([["secret", privateKey]])
    const escaped = JSON.stringify({ private_key: privateKey })
    expect(foundOfType("secret", escaped).join("")).toContain("BEGIN RSA PRIVATE KEY")
    const truncated = privateKey.slice(0, 200)
    expect(foundOfType("secret", truncated)).toEqual([truncated])
  })

  it("finds passwords in URLs and connection strings, and in assignments", () => {
    expect(foundOfType("secret", "postgres://app:Sup3rS3cret@db.internal.example:5432/app")).toEqual([
      "app:Sup3rS3cret"
    ])
    expect(foundOfType("secret", "DB_PASSWORD=Tr0ub4dor&3x")).toEqual(["Tr0ub4dor&3x"])
    expect(foundOfType("secret", `{"client_secret": "9f8e7d6c5b4a39281706"}`)).toEqual(["9f8e7d6c5b4a39281706"])
    // Names written as one word, as some tools do.
    expect(foundOfType("secret", "accesskey=AbC123xyz987Qw authkey: Zz9yX8wV7uT6")).toEqual([
      "AbC123xyz987Qw",
      "Zz9yX8wV7uT6"
    ])
    expect(foundOfType("secret", "Authorization: Bearer q8Zr2Lt6Vx0Bn4Cj8Dk2Fs6Gh")).toEqual([
      "q8Zr2Lt6Vx0Bn4Cj8Dk2Fs6Gh"
    ])
    expect(foundOfType("secret", "my password is Tr0ub4dor&3")).toEqual(["Tr0ub4dor&3"])
  })

  it.each([
    "api_key=your_api_key_here",
    "password: ${DB_PASSWORD}",
    "https://user:password@example.com/docs",
    "-----BEGIN PRIVATE KEY-----\nxxx\n-----END PRIVATE KEY-----",
    "sk_live_short",
    "pk_live_51AbCdEfGhIjKlMnOpQrStUvWx",
    "max_tokens: 1000000",
    "the token expired yesterday",
    "my password is secret"
  ])("leaves placeholders and look-alikes alone: %j", (text) => {
    expect(foundOfType("secret", text)).toEqual([])
  })

  it("knows placeholders", () => {
    for (const value of ["xxx", "********", "<your-token>", "${TOKEN}", "changeme", "YOUR_API_KEY", "secret)"]) {
      expect(isPlaceholder(value), value).toBe(true)
    }
    expect(isPlaceholder("q8Zr2Lt6Vx0Bn4Cj")).toBe(false)
  })
})

describe("redaction", () => {
  it("replaces each span by its typed placeholder", () => {
    const text =
      "Mail jane.roe@example.org or call +44 20 7946 0958; card 4111 1111 1111 1111, " +
      "IBAN DE89 3704 0044 0532 0130 00, SSN 536-22-1478, host 10.0.0.1, token ghp_R8fk2LqZp0Xw3Ty7Bn4Mc9Vd1Hs6Ja5Ke2Ug."
    expect(redactPii(text).text).toBe(
      "Mail [EMAIL] or call [PHONE]; card [CREDIT_CARD], IBAN [IBAN], SSN [SSN], host [IP_ADDRESS], token [SECRET]."
    )
  })

  it("redacts only the configured types", () => {
    const text = "Mail jane.roe@example.org or call +44 20 7946 0958"
    const onlyEmail = redactPii(text, { types: new Set(["email"]), regions: ["GB"] })
    expect(onlyEmail.text).toBe("Mail [EMAIL] or call +44 20 7946 0958")
    expect(findPii(text, { types: allPiiTypes, regions: ["GB"] })).toHaveLength(2)
  })

  it("leaves text without personal data untouched", () => {
    const text = "Version 2.4 shipped on 2024-05-01; 3 of 12 tests failed (25%)."
    expect(redactPii(text)).toEqual({ text, spans: [] })
  })
})

describe("machine addresses", () => {
  it("leaves loopback and unspecified addresses alone (they name this machine, not a person)", () => {
    for (const text of ["Listening on http://127.0.0.1:8000", "bound to 0.0.0.0:8000", "listening on [::1]:8000"]) {
      expect(findIpAddresses(text), text).toEqual([])
    }
    expect(findIpAddresses("client 203.0.113.7 via 127.0.0.1").map((span) => span.start)).toEqual([7])
  })
})
