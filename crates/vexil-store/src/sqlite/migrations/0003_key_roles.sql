-- Admin keys' roles and environment scopes (SPEC 9). Admin keys created before keep every right:
-- `owner` in every environment (NULL environments).
ALTER TABLE api_keys ADD COLUMN role TEXT;
ALTER TABLE api_keys ADD COLUMN environments TEXT;
UPDATE api_keys SET role = 'owner' WHERE kind = 'admin';
