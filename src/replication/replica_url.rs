//! The replica's address as shown to people (`/readyz`, `/metrics`, the
//! admin page): user, password and query string removed, so an
//! `sftp://user:secret@host/path` or an S3 URL with signed parameters never
//! leaves the process.

/// `url` without credentials (`user:password@`) and without a query or
/// fragment; a plain path stays as it is.
pub fn without_secrets(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or("");
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::without_secrets;

    #[test]
    fn credentials_and_queries_are_removed() {
        assert_eq!(without_secrets("sftp://backup:s3cr3t@host:22/srv/el"), "sftp://host:22/srv/el");
        assert_eq!(
            without_secrets("s3://bucket/energyload?access-key-id=AK&secret-access-key=SK"),
            "s3://bucket/energyload"
        );
        assert_eq!(without_secrets("file:///mnt/replica#x"), "file:///mnt/replica");
        assert_eq!(without_secrets("/mnt/backup/energyload"), "/mnt/backup/energyload");
        // An `@` in the path is not a credential separator.
        assert_eq!(without_secrets("s3://bucket/a@b"), "s3://bucket/a@b");
        assert_eq!(without_secrets("sftp://u:p@w@host/x"), "sftp://host/x");
    }
}
