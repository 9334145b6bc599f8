/** SQLite SQL text shared by the adapter's readers: quoted names, and values in and out of row images. */

export const quoteId = (name: string) => `"${name.replace(/"/g, '""')}"`;
export const quoteStr = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** Encodes a value for a JSON row image: blobs become ["x", HEX]. */
export const enc = (expr: string) => `CASE WHEN typeof(${expr})='blob' THEN json_array('x',hex(${expr})) ELSE ${expr} END`;

/** Decodes element i of the JSON image `j` (bound once as `FROM (SELECT ? AS j)`). */
export const dec = (i: number) =>
  `CASE WHEN json_type(j,'$[${i}]')='array' THEN unhex(json_extract(j,'$[${i}][1]')) ELSE json_extract(j,'$[${i}]') END`;
