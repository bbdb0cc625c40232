/*
 * Bundle of the slave side of the ssh transport. Not an executable of its own: bin/wal-ctl
 * loads it for `wal-ctl SLAVE_CONFIG xVERB …` (the verbs in storage/ssh/helper.ts), so the
 * master runs the slave's wal-ctl as walmgr ran the slave's walmgr.py.
 */
import { helperMain } from "../storage/ssh/helper";

helperMain(process.argv.slice(2));
