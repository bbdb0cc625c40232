/** Kept equal to package.json's version by a unit test; a constant keeps start-up free of JSON reads. */
export const VERSION = "0.1.0";
