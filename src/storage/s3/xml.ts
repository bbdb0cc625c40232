/**
 * S3's XML answers, read by fast-xml-parser (the parser the AWS SDK uses) and checked to be the
 * document that was asked for. An answer that is not (an HTML page from a captive portal or a
 * misrouted load balancer, another document, a listing cut short) is never read as "nothing
 * there": what deletes WAL decides from listings, so a listing that cannot be trusted must fail.
 */
import { XMLParser, XMLValidator } from "fast-xml-parser";

/** An XML element as the parser gives it: text, or named children (repeated ones as arrays). */
type Node = string | { [name: string]: Node | Node[] };

/** Elements that repeat in the documents we read: always arrays, even when one is there. */
const REPEATED = new Set(["ListBucketResult.Contents", "ListBucketResult.CommonPrefixes"]);

let parser: XMLParser | undefined;
function xmlParser(): XMLParser {
  parser ??= new XMLParser({
    ignoreAttributes: true,
    // Keys, tokens and sizes stay text: "0001" is a key, not the number 1.
    parseTagValue: false,
    // A key may begin or end with a space.
    trimValues: false,
    // Numeric character references (&#13; in a key) are decoded too, not only the five named ones.
    htmlEntities: true,
    isArray: (_name, jpath) => REPEATED.has(String(jpath)),
  });
  return parser;
}

/** A parsed S3 document: the root element's name and content. */
export interface S3Document {
  root: string;
  body: { [name: string]: Node | Node[] };
}

/**
 * Parses `raw` as one well-formed XML document; undefined when it is not one (HTML, JSON, an
 * empty or truncated body, a DOCTYPE: S3 never sends one, and its entities are not expanded).
 */
export function parseDocument(raw: Buffer | string): S3Document | undefined {
  const text = (typeof raw === "string" ? raw : raw.toString("utf8")).replace(/^\uFEFF/, "").trimStart();
  if (text === "" || /<!DOCTYPE/i.test(text) || XMLValidator.validate(text) !== true) return undefined;
  let parsed: Record<string, unknown>;
  try {
    parsed = xmlParser().parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const roots = Object.keys(parsed).filter((k) => !k.startsWith("?"));
  if (roots.length !== 1) return undefined;
  const root = roots[0] as string;
  const body = parsed[root];
  // <Root/> or <Root></Root> parses as "": an element without children.
  if (body === "" || body === undefined) return { root, body: {} };
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
  return { root, body: body as S3Document["body"] };
}

/** The text of the child `name` of `node` (undefined when absent, or not text). */
export function childText(node: Node | Node[] | undefined, name: string): string | undefined {
  if (node === undefined || typeof node === "string" || Array.isArray(node)) return undefined;
  const v = node[name];
  if (v === "" || typeof v === "string") return v;
  // <Prefix/> parses as "", an element holding only whitespace as { "#text": " " }.
  if (v !== undefined && !Array.isArray(v) && typeof v === "object") {
    const t = v["#text"];
    return Object.keys(v).length === 1 && typeof t === "string" ? t : undefined;
  }
  return undefined;
}

/** Code and Message of an S3 error document (empty strings when `raw` is not one). */
export function parseError(raw: Buffer): { code: string; message: string } {
  const doc = parseDocument(raw.subarray(0, 64 * 1024));
  if (doc?.root !== "Error") return { code: "", message: "" };
  return { code: childText(doc.body, "Code") ?? "", message: childText(doc.body, "Message") ?? "" };
}

/** One page of a ListObjectsV2 answer. */
export interface ListPage {
  keys: string[];
  sizes: number[];
  modified: number[];
  prefixes: string[];
  /** The continuation token when the listing goes on (IsTruncated true), else undefined. */
  next: string | undefined;
}

/**
 * Reads a ListObjectsV2 answer to a request for `prefix`; a string saying what is wrong when it
 * is not a complete, consistent page of that listing: another root than ListBucketResult, no
 * IsTruncated, truncated without NextContinuationToken, a key or common prefix outside
 * `prefix`, an entry without Key or with a Size that is not a number.
 */
export function parseListing(raw: Buffer, prefix: string): ListPage | string {
  const doc = parseDocument(raw);
  if (doc === undefined) return "not an XML document";
  if (doc.root !== "ListBucketResult") return `an XML document <${doc.root}>, not a ListBucketResult`;
  const truncated = childText(doc.body, "IsTruncated");
  if (truncated !== "true" && truncated !== "false")
    return `a ListBucketResult without IsTruncated true or false (${truncated === undefined ? "absent" : JSON.stringify(truncated)}): cannot tell whether the listing is complete`;
  const next = truncated === "true" ? childText(doc.body, "NextContinuationToken") : undefined;
  if (truncated === "true" && !next) return "a truncated ListBucketResult without NextContinuationToken";
  const page: ListPage = { keys: [], sizes: [], modified: [], prefixes: [], next };
  const list = (name: string): Node[] => {
    const v = doc.body[name];
    return v === undefined ? [] : Array.isArray(v) ? v : [v];
  };
  for (const c of list("Contents")) {
    const key = childText(c, "Key");
    if (key === undefined || key === "") return "a ListBucketResult entry without Key";
    if (!key.startsWith(prefix))
      return `a ListBucketResult naming ${JSON.stringify(key)}, outside the prefix asked for`;
    const size = Number(childText(c, "Size"));
    if (!Number.isSafeInteger(size) || size < 0) return `a ListBucketResult entry ${key} without a valid Size`;
    page.keys.push(key);
    page.sizes.push(size);
    page.modified.push(Date.parse(childText(c, "LastModified") ?? "") || 0);
  }
  for (const c of list("CommonPrefixes")) {
    const p = childText(c, "Prefix");
    if (p === undefined || !p.startsWith(prefix))
      return `a ListBucketResult common prefix ${JSON.stringify(p ?? "")} outside the prefix asked for`;
    page.prefixes.push(p);
  }
  return page;
}

/** A short, printable account of a body that is not what was asked for (for messages). */
export function describeBody(contentType: string | undefined, raw: Buffer): string {
  const text = raw
    .subarray(0, 300)
    .toString("utf8")
    // Control characters (a binary body) become spaces: the message stays one printable line.
    .replace(/[\p{Cc}]+/gu, " ")
    .replace(/\s+/g, " ")
    .trim();
  const head = text.length > 120 ? `${text.slice(0, 120)}…` : text;
  return `${raw.length} byte(s)${contentType ? ` of ${contentType}` : ""}${head ? `: ${JSON.stringify(head)}` : ""}`;
}
