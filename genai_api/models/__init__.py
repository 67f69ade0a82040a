"""The models table: built-in entries, prices and TTLs (`table`), and the models file that
overrides and extends it, checked key by key at start-up (`file`)."""
