-- API key names are unique among active (not revoked) keys, compared
-- ignoring ASCII case like usernames; new names arrive trimmed with inner
-- whitespace made one space (domain::api_key_name).
--
-- Databases from before may already hold such duplicates (the CLI did not
-- even trim). So that this migration never fails on them, existing names are
-- first trimmed (an empty one becomes `unnamed <id>`), then every active
-- key whose name an older active key already has (same name ignoring ASCII
-- case; older = created earlier, then smaller id) is renamed
-- `<name> (duplicate <id>)`. Only names change: every key keeps working, and
-- `apikey list` shows the renamed ones. Revoked keys keep their names.
--
-- Numbered 0006 to stay clear of another change's 0005. Every statement can
-- run twice harmlessly (a database migrated before 0005 was merged in front
-- of it would meet it again).
UPDATE api_keys SET name = trim(name, ' ' || char(9) || char(10) || char(13))
 WHERE name <> trim(name, ' ' || char(9) || char(10) || char(13));
UPDATE api_keys SET name = 'unnamed ' || id WHERE name = '';
UPDATE api_keys SET name = name || ' (duplicate ' || id || ')'
 WHERE revoked_at IS NULL
   AND EXISTS (SELECT 1 FROM api_keys AS older
                WHERE older.revoked_at IS NULL
                  AND older.name = api_keys.name COLLATE NOCASE
                  AND (older.created_at < api_keys.created_at
                       OR (older.created_at = api_keys.created_at AND older.id < api_keys.id)));
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name COLLATE NOCASE) WHERE revoked_at IS NULL;
