import { posix } from "node:path";
import { readBackupInfo } from "../slavedir/backup-sets";
import { readBytes } from "../storage/bytes";
import type { StorageDriver } from "../storage/driver";
import { lsnToSegment, parseLsn, parseWalName } from "../wal/names";
import type { ChainStart } from "./chain";

/** Where a set's WAL starts and must reach, and whose WAL it is. */
export interface SetStart extends ChainStart {
  systemIdentifier?: string;
}

/**
 * A set's place in the WAL: from its .walmgr-backup.json, or, for a set taken by walmgr.py,
 * from its backup_label (start only: the end is then taken to be the start segment, which
 * under-states what it needs). The stop segment is the one holding the last byte before
 * pg_backup_stop's LSN (a stop at a segment boundary needs nothing of the next segment).
 * undefined when neither file can be read.
 */
export async function setStart(driver: StorageDriver, set: string, segSize: number): Promise<SetStart | undefined> {
  const info = await readBackupInfo(driver, set);
  const fromInfo = startFromInfo(info, segSize);
  if (fromInfo !== undefined) return fromInfo;
  const label = await readBytes(driver, posix.join(set, "backup_label"));
  const m = label && /START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)/.exec(label.toString("utf8"));
  const wal = m?.[1];
  if (wal === undefined) return undefined;
  const tli = /START TIMELINE: (\d+)/.exec(label?.toString("utf8") ?? "")?.[1];
  return { timeline: tli !== undefined ? Number(tli) : (parseWalName(wal)?.timeline ?? 1), startWal: wal };
}

/**
 * A set's place in the WAL from its metadata (a plain set's .walmgr-backup.json, or a block
 * repository set's info): undefined when it does not name a start segment.
 */
export function startFromInfo(info: Record<string, unknown> | undefined, segSize: number): SetStart | undefined {
  const start =
    typeof info?.startWal === "string" && parseWalName(info.startWal)?.kind === "segment" ? info.startWal : undefined;
  if (info !== undefined && start !== undefined) {
    const timeline = typeof info.timeline === "number" ? info.timeline : (parseWalName(start)?.timeline ?? 1);
    let stopWal = typeof info.stopWal === "string" ? info.stopWal : undefined;
    if (typeof info.stopLsn === "string") {
      try {
        stopWal = lsnToSegment(parseLsn(info.stopLsn) - 1n, timeline, segSize).name;
      } catch {
        // keep stopWal as recorded
      }
    }
    return {
      timeline,
      startWal: start,
      ...(stopWal !== undefined ? { stopWal } : {}),
      ...(typeof info.systemIdentifier === "string" ? { systemIdentifier: info.systemIdentifier } : {}),
    };
  }
  return undefined;
}
