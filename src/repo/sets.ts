import { posix } from "node:path";
import type { StorageDriver } from "../storage/driver";
import { readJson, writeBytes } from "../storage/bytes";
import { MANIFEST_SUFFIX, type RepoLayout } from "./layout";
import { readSetInfo } from "./manifest";

/** A set's name: the UTC time its backup began, `YYYYMMDDTHHMMSSZ` (a clash: `-N`); sorts as times. */
export const REPO_SET_NAME = /^\d{8}T\d{6}Z(-\d+)?$/;

/** Names of the complete sets (those with a manifest), oldest first. */
export async function listRepoSets(driver: StorageDriver, layout: RepoLayout): Promise<string[]> {
  const names = (await driver.list(layout.setsDir)) ?? [];
  return names
    .filter((n) => n.endsWith(MANIFEST_SUFFIX))
    .map((n) => n.slice(0, -MANIFEST_SUFFIX.length))
    .filter((n) => REPO_SET_NAME.test(n))
    .sort();
}

/** Where a set's info is kept beside its manifest (a copy of the manifest's end line, for listing). */
export function infoPath(layout: RepoLayout, set: string): string {
  return posix.join(layout.setsDir, `${set}.info`);
}

/** Writes the copy of a set's info beside its manifest (durable); the manifest stays the truth. */
export async function writeSetInfo(
  driver: StorageDriver,
  layout: RepoLayout,
  set: string,
  info: Record<string, unknown>,
): Promise<void> {
  await writeBytes(driver, infoPath(layout, set), Buffer.from(`${JSON.stringify(info, null, 2)}\n`));
}

/**
 * The info of the set `set` (its manifest's end line): from the copy beside it, else from the
 * manifest itself (a backup killed between the two, or a copy that does not parse). Undefined
 * when the set has no manifest.
 */
export async function repoSetInfo(
  driver: StorageDriver,
  layout: RepoLayout,
  set: string,
): Promise<Record<string, unknown> | undefined> {
  const copy = await readJson<Record<string, unknown>>(driver, infoPath(layout, set)).catch(() => undefined);
  if (copy !== undefined && typeof copy === "object" && copy !== null && typeof copy.startWal === "string") return copy;
  return (await readSetInfo(driver, layout.manifestPath(set)))?.info;
}
