-- Title and text lowercased by zmot with Unicode's rules, for case-insensitive search
-- on both databases: SQLite's lower() folds ASCII letters only, so a search for "café"
-- never found "CAFÉ". The store fills it on every write; rows written before this
-- migration are filled when the store next opens the database.
ALTER TABLE mentions ADD COLUMN search_text TEXT;
-- The rows still to fill, found without reading the table (the store looks for them
-- each time it opens the database); empty once they are filled.
CREATE INDEX mentions_search_text_missing ON mentions (id) WHERE search_text IS NULL;
