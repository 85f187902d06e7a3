-- Who sent each request: the authenticated identity (a token file's name, or a Kubernetes
-- user such as system:serviceaccount:team:chat), beside user_id, the end user it acted for.
ALTER TABLE audit_requests ADD COLUMN caller text;
