-- Sign-ins in progress now live in the browser that started them (an encrypted, authenticated
-- cookie), so a callback opened in another browser is refused and an anonymous GET /login
-- writes nothing. The server-side table is no longer read or written.
DROP TABLE console_logins;
