-- The raw read-only catalog pass a DBA runs before maintenance, the
-- baseline of `cargo bench --bench catalog` (issue 16). One statement per
-- block, separated by lines holding only `;`. Written for this benchmark:
-- the sizes, statistics and index-usage queries every runbook has, the
-- table and btree bloat estimates by the statistical method of
-- ioguix/pgsql-bloat-estimation (per relation: rows times the average
-- width from pg_stats, plus tuple and page overhead, at the fillfactor),
-- and the blocked sessions.
--
-- The estimates read `pg_statistic` (superuser only) by (relation,
-- attribute number), through its index: the fastest form a superuser can
-- write. ioguix's own queries join the `pg_stats` view by names, with an
-- `OR` for expression columns; PostgreSQL plans that join on the view's
-- poor row estimate as a nested loop, and on the 25,000-relation database
-- the btree query alone ran for 5 minutes (22 s without the `OR`): a
-- baseline of that would flatter dbmaint.

-- 1. Table sizes (heap, TOAST, indexes).
SELECT n.nspname, c.relname, pg_total_relation_size(c.oid) AS total_bytes, pg_relation_size(c.oid) AS heap_bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
ORDER BY 3 DESC
;
-- 2. Dead tuples and the last vacuum and analyze.
SELECT s.schemaname, s.relname, n_live_tup, n_dead_tup, n_mod_since_analyze,
       greatest(last_vacuum, last_autovacuum) AS vacuumed, greatest(last_analyze, last_autoanalyze) AS analyzed,
       age(c.relfrozenxid) AS xid_age
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
ORDER BY n_dead_tup DESC
;
-- 3. Index sizes and usage.
SELECT s.schemaname, s.relname, s.indexrelname, s.idx_scan, pg_relation_size(s.indexrelid) AS bytes,
       x.indisunique, x.indisvalid
FROM pg_stat_user_indexes s JOIN pg_index x ON x.indexrelid = s.indexrelid
ORDER BY 5 DESC
;
-- 4. Table bloat estimate.
SELECT schemaname, tblname, relpages * bs AS real_bytes,
       greatest(relpages - ceil(reltuples / greatest(floor((bs - 24) * fillfactor / 100 / tuple_width), 1)), 0) * bs AS waste_bytes
FROM (
  SELECT n.nspname AS schemaname, c.relname AS tblname, c.relpages, greatest(c.reltuples, 0) AS reltuples,
         current_setting('block_size')::numeric AS bs,
         coalesce((regexp_match(array_to_string(c.reloptions, ','), 'fillfactor=([0-9]+)'))[1]::numeric, 100) AS fillfactor,
         4 + ceil((23 + CASE WHEN max(coalesce(s.stanullfrac, 0)) > 0 THEN ceil(count(*) / 8.0) ELSE 0 END) / 8.0) * 8
           + ceil(sum((1 - coalesce(s.stanullfrac, 0)) * coalesce(s.stawidth, 0)) / 8.0) * 8 AS tuple_width
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_statistic s ON s.starelid = c.oid AND s.staattnum = a.attnum AND NOT s.stainherit
  WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
  GROUP BY n.nspname, c.relname, c.relpages, c.reltuples, c.reloptions
) t
ORDER BY 4 DESC
;
-- 5. Btree index bloat estimate: a key column's statistics are its
-- table's, an expression's the index's own.
SELECT schemaname, tblname, idxname, relpages * bs AS real_bytes,
       greatest(relpages - 1 - ceil(reltuples / greatest(floor((bs - 40) * fillfactor / 100 / (4 + tuple_width)), 1)), 0) * bs AS waste_bytes
FROM (
  SELECT n.nspname AS schemaname, t.relname AS tblname, i.relname AS idxname, i.relpages,
         greatest(i.reltuples, 0) AS reltuples, current_setting('block_size')::numeric AS bs,
         coalesce((regexp_match(array_to_string(i.reloptions, ','), 'fillfactor=([0-9]+)'))[1]::numeric, 90) AS fillfactor,
         ceil((8 + CASE WHEN max(coalesce(s.stanullfrac, 0)) > 0 THEN 4 ELSE 0 END
               + sum((1 - coalesce(s.stanullfrac, 0)) * coalesce(s.stawidth, 1024))) / 8.0) * 8 AS tuple_width
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = i.relnamespace JOIN pg_am am ON am.oid = i.relam AND am.amname = 'btree'
  JOIN pg_attribute ia ON ia.attrelid = i.oid AND ia.attnum > 0
  LEFT JOIN pg_attribute ta ON ta.attrelid = t.oid AND ta.attnum = x.indkey[ia.attnum - 1] AND ta.attnum > 0
  LEFT JOIN pg_statistic s ON s.starelid = CASE WHEN ta.attnum IS NULL THEN i.oid ELSE t.oid END
    AND s.staattnum = coalesce(ta.attnum, ia.attnum) AND NOT s.stainherit
  WHERE x.indisvalid AND t.relkind = 'r' AND i.relpages > 0
  GROUP BY n.nspname, t.relname, i.relname, i.relpages, i.reltuples, i.reloptions
) b
ORDER BY 5 DESC
;
-- 6. Sessions waiting on another's lock, and who blocks them.
SELECT pid, pg_blocking_pids(pid) AS blocked_by, wait_event_type, state,
       now() - query_start AS waiting, left(query, 120) AS query
FROM pg_stat_activity
WHERE cardinality(pg_blocking_pids(pid)) > 0
