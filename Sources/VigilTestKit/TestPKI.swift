import Glibc

/// A throw-away PKI made with the `openssl` command at test time: CAs, a server certificate
/// for `localhost`/127.0.0.1, client certificates (valid, expired, or from another CA).
/// EC P-256 keys, unencrypted, in one temp directory; `cleanUp()` removes it.
public final class TestPKI: Sendable {
    /// A certificate and its private key, as PEM file paths.
    public struct Pair: Sendable, Hashable {
        public var cert: String
        public var key: String
    }

    public let directory: String
    let openssl: String

    public init() throws(MosquittoBrokerError) {
        directory = try MosquittoBroker.makeTempDirectory()
        let candidates = ["/usr/bin/openssl", "/usr/local/bin/openssl"]
        guard let found = candidates.first(where: { access($0, X_OK) == 0 }) else {
            throw MosquittoBrokerError("TestPKI", "no openssl executable (apt install openssl)")
        }
        openssl = found
    }

    /// A self-signed CA valid for ten years. `name` is also the file stem.
    public func makeCA(_ name: String) throws(MosquittoBrokerError) -> Pair {
        let pair = Pair(cert: "\(directory)/\(name).crt", key: "\(directory)/\(name).key")
        try MosquittoBroker.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                 "-nodes", "-keyout", pair.key, "-out", pair.cert, "-days", "3650",
                                 "-subj", "/CN=\(name)", "-addext", "basicConstraints=critical,CA:TRUE",
                                 "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        try MosquittoBroker.writeFile("\(directory)/\(name).index", "")
        try MosquittoBroker.writeFile("\(directory)/\(name).serial", "1000\n")
        try MosquittoBroker.writeFile("\(directory)/\(name).cnf", """
            [ ca ]
            default_ca = this
            [ this ]
            database = \(directory)/\(name).index
            new_certs_dir = \(directory)
            serial = \(directory)/\(name).serial
            default_md = sha256
            policy = anything
            unique_subject = no
            [ anything ]
            commonName = supplied
            [ server ]
            basicConstraints = CA:FALSE
            extendedKeyUsage = serverAuth
            subjectAltName = DNS:localhost, IP:127.0.0.1
            [ client ]
            basicConstraints = CA:FALSE
            extendedKeyUsage = clientAuth

            """)
        return pair
    }

    /// A server certificate signed by `ca`, for `altNames` (subjectAltName syntax; default
    /// localhost and 127.0.0.1).
    public func issueServer(ca: Pair, name: String = "server",
                            altNames: String = "DNS:localhost, IP:127.0.0.1") throws(MosquittoBrokerError) -> Pair {
        try issue(ca: ca, name: name, commonName: "vigil-test-broker", extensions: "server", start: nil, end: nil,
                  extfile: "[ server ]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\nsubjectAltName = \(altNames)\n")
    }

    /// A client certificate with `commonName`, signed by `ca`; `expired`: valid only in
    /// January 2020 (`openssl ca -startdate/-enddate`, as `x509 -days` cannot go negative).
    public func issueClient(ca: Pair, name: String, commonName: String, expired: Bool = false) throws(MosquittoBrokerError) -> Pair {
        try issue(ca: ca, name: name, commonName: commonName, extensions: "client",
                  start: expired ? "20200101000000Z" : nil, end: expired ? "20200201000000Z" : nil)
    }

    private func issue(ca: Pair, name: String, commonName: String, extensions: String,
                       start: String?, end: String?, extfile: String? = nil) throws(MosquittoBrokerError) -> Pair {
        let pair = Pair(cert: "\(directory)/\(name).crt", key: "\(directory)/\(name).key")
        let csr = "\(directory)/\(name).csr"
        try MosquittoBroker.run([openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                 "-nodes", "-keyout", pair.key, "-out", csr, "-subj", "/CN=\(commonName)"])
        let stem = String(ca.cert.dropLast(4))  // the CA's .crt path without ".crt"
        var argv = [openssl, "ca", "-batch", "-notext", "-config", stem + ".cnf", "-cert", ca.cert, "-keyfile", ca.key,
                    "-in", csr, "-out", pair.cert, "-extensions", extensions]
        if let extfile {
            let path = "\(directory)/\(name).ext"
            try MosquittoBroker.writeFile(path, extfile)
            argv += ["-extfile", path]
        }
        if let start, let end {
            argv += ["-startdate", start, "-enddate", end]
        } else {
            argv += ["-days", "365"]
        }
        try MosquittoBroker.run(argv)
        return pair
    }

    /// Removes the directory and everything in it.
    public func cleanUp() {
        if let dir = opendir(directory) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                _ = unlink(directory + "/" + name)
            }
            closedir(dir)
        }
        _ = rmdir(directory)
    }
}
