import type { BackupInfo } from "../../slavedir/backup-sets";
import type { TreeProgress, TreeStats } from "../../storage/driver";

/**
 * Where a backup's copy goes: the plain format's new set folder (plainSink), or a set of the
 * block repository (command/backup/repo.ts).
 */
export interface SetSink {
  /** For messages: where the copy goes. */
  readonly where: string;
  /**
   * `finish` makes the set visible (the repository's manifest): it is called only once the
   * backup's WAL is archived, so a backup that fails waiting for it lists no set. (A plain set
   * becomes visible only when the caller puts its folder in place, after all of this.)
   */
  readonly publishesOnFinish?: boolean;
  /** Copies the data directory `source` (pg_control last); what was copied. */
  copy(source: string, systemIdentifier: string, onProgress: TreeProgress): Promise<TreeStats>;
  /** After pg_backup_stop: the label, the tablespace map and the set's info complete the set. */
  finish(labelfile: string, spcmapfile: string | null, info: BackupInfo): Promise<void>;
}
