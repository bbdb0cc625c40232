/*
 * Signal-time cleanup of a backup into an object store, run by S3Driver's synchronous
 * `removeTreeSync`/`releaseLockSync` (a SIGINT/SIGTERM handler cannot wait for HTTP): reads the
 * job as JSON on stdin (the credentials travel there, never on a command line) and removes a
 * half-built set, or BACKUPLOCK when it still names the given holder. Not an executable of its
 * own in bin/: nobody runs it by hand.
 */
import { parseLockInfo } from "../slavedir/lock";
import { readBytes } from "../storage/bytes";
import { S3Client, type S3Target } from "../storage/s3/client";
import type { Credentials } from "../storage/s3/credentials";
import { S3Driver } from "../storage/s3/driver";

interface Job {
  target: Omit<S3Target, "credentials" | "endpoint"> & { endpoint: string };
  credentials: Credentials;
  partSize: number;
  tree?: string;
  lock?: { path: string; pid: number; host: string };
}

async function run(job: Job): Promise<void> {
  const client = new S3Client({
    ...job.target,
    endpoint: new URL(job.target.endpoint),
    credentials: () => job.credentials,
  });
  const driver = new S3Driver({ client, partSize: job.partSize });
  try {
    if (job.tree !== undefined) await driver.features.tree?.removeTree(job.tree);
    if (job.lock !== undefined) {
      const raw = await readBytes(driver, job.lock.path);
      const holder = raw === undefined ? undefined : parseLockInfo(raw.toString("utf8"));
      if (holder?.pid === job.lock.pid && holder.host === job.lock.host) await driver.remove(job.lock.path);
    }
  } finally {
    client.close();
  }
}

const parts: Buffer[] = [];
process.stdin.on("data", (c: Buffer) => parts.push(c));
process.stdin.on("end", () => {
  run(JSON.parse(Buffer.concat(parts).toString("utf8")) as Job).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${(err as Error).message}\n`);
      process.exit(6);
    },
  );
});
