import { posix } from "node:path";
import { IoError } from "../errors";
import { TMP_PREFIX } from "../storage/durable";
import type { StorageDriver } from "../storage/driver";
import { isPackId, type RepoLayout } from "./layout";
import { openManifest } from "./manifest";
import { infoPath } from "./sets";

/** What retention keeps: `keep_backups` and `keep_days` of the config. */
export interface RetentionPolicy {
  /** Sets to keep, newest first (0 and 1: the newest only). */
  keepBackups: number;
  /** The recovery window in days (0: none): every set needed to restore to any moment in it. */
  keepDays: number;
  /** ms since the epoch (tests pass their own clock). */
  now: number;
}

/** A set as retention sees it: its name and when its backup ended (ms; NaN when unknown). */
export interface DatedSet {
  name: string;
  stopTime: number;
}

/**
 * The sets a policy keeps, given every set oldest first: the newest `keepBackups` (at least
 * one), and, with `keepDays`, every set that ended inside the window plus the newest one that
 * ended before it (recovery to the window's first moments starts from that one). A set whose time
 * is unknown is kept. What is not kept may be dropped.
 */
export function setsToKeep(sets: DatedSet[], policy: RetentionPolicy): Set<string> {
  const keep = new Set<string>();
  const newestFirst = [...sets].reverse();
  for (const s of newestFirst.slice(0, Math.max(1, policy.keepBackups))) keep.add(s.name);
  for (const s of sets) if (!Number.isFinite(s.stopTime)) keep.add(s.name);
  if (policy.keepDays > 0) {
    const from = policy.now - policy.keepDays * 86_400_000;
    let before: DatedSet | undefined;
    for (const s of sets) {
      if (!Number.isFinite(s.stopTime)) continue;
      if (s.stopTime >= from) keep.add(s.name);
      else before = s;
    }
    if (before !== undefined) keep.add(before.name);
  }
  return keep;
}

/** What an expire removed (or, with `dryRun`, would remove). */
export interface ExpireResult {
  droppedSets: string[];
  removedPacks: string[];
  /** Bytes of the packs removed. */
  removedBytes: number;
  /** Packs the kept sets reference, and their bytes. */
  keptPacks: number;
  keptBytes: number;
}

/**
 * Drops the sets not in `keep` (their manifest first: a set is gone once its manifest is, and
 * nothing else refers to it), then removes every pack no kept set references (mark: every kept
 * manifest read through; sweep: the pack folders listed). The caller holds BACKUPLOCK, so no
 * backup writes packs meanwhile: a pack nobody references is a dropped set's, or a killed
 * backup's. Killed at any point, every kept set stays whole (a pack is removed only after the
 * manifests that kept it are gone) and the next expire finishes the work. A kept manifest that
 * cannot be read stops the sweep (nothing is removed on a guess).
 */
export async function expireRepo(
  driver: StorageDriver,
  layout: RepoLayout,
  sets: string[],
  keep: Set<string>,
  opts: { dryRun?: boolean; log?: (msg: string) => void } = {},
): Promise<ExpireResult> {
  const dropped = sets.filter((s) => !keep.has(s));
  for (const s of dropped) {
    opts.log?.(`${opts.dryRun === true ? "would drop" : "dropping"} set ${s} (out of keep_backups/keep_days)`);
    if (opts.dryRun === true) continue;
    await driver.remove(layout.manifestPath(s));
    await driver.remove(infoPath(layout, s));
  }
  for (const name of (await driver.list(layout.setsDir)) ?? []) {
    // A manifest a killed backup was writing; a set's info copy whose manifest is gone.
    const orphanInfo = name.endsWith(".info") && !sets.includes(name.slice(0, -".info".length));
    if ((name.startsWith(TMP_PREFIX) || orphanInfo) && opts.dryRun !== true)
      await driver.remove(posix.join(layout.setsDir, name));
  }
  const referenced = new Set<string>();
  for (const s of sets.filter((x) => keep.has(x))) {
    const m = await openManifest(driver, layout.manifestPath(s));
    if (m === undefined) throw new IoError(`the kept set ${s} has no manifest any more: nothing swept`);
    for await (const e of m.entries) for (const f of e.f) referenced.add(f[0]);
  }
  const result: ExpireResult = { droppedSets: dropped, removedPacks: [], removedBytes: 0, keptPacks: 0, keptBytes: 0 };
  for (const fan of (await driver.list(layout.packsDir)) ?? []) {
    if (!/^[0-9a-f]{2}$/.test(fan)) continue;
    const dir = posix.join(layout.packsDir, fan);
    for (const name of (await driver.list(dir)) ?? []) {
      if (name.startsWith(TMP_PREFIX)) {
        // Half-written by a killed backup (under BACKUPLOCK nothing else writes here).
        if (opts.dryRun !== true) await driver.remove(posix.join(dir, name));
        continue;
      }
      const id = name.endsWith(".pack") ? name.slice(0, -".pack".length) : "";
      if (!isPackId(id) || id.slice(0, 2) !== fan) continue;
      const size = (await driver.info(posix.join(dir, name)))?.size ?? 0;
      if (referenced.has(id)) {
        result.keptPacks++;
        result.keptBytes += size;
        continue;
      }
      result.removedPacks.push(id);
      result.removedBytes += size;
      if (opts.dryRun !== true) await driver.remove(posix.join(dir, name));
    }
  }
  return result;
}
