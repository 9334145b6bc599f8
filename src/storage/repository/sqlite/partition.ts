/** sync.ts partitionOf as SQLite SQL over a table's key columns (the snapshot's WHERE clause). */

export function partitionSql(keyExprs: string[], encoded: string[], index: number, count: number): string {
  if (count <= 1) return "1";
  const hashed = `ferry_partition(json_array(${encoded.join(",")}), ${count})`;
  if (keyExprs.length !== 1) return `${hashed} = ${index}`;
  const k = keyExprs[0];
  return `(CASE WHEN typeof(${k})='integer' AND ${k} BETWEEN -9007199254740991 AND 9007199254740991 THEN ((${k} % ${count}) + ${count}) % ${count} ELSE ${hashed} END) = ${index}`;
}
