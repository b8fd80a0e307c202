//! The custom authorization server's fixed signing keys (three, for rotation).
//!
//! Why it exists: access tokens are RS256 JWTs verified against the server's JWKS; tests rotate
//! keys and need the next key to exist without generating RSA keys at run time (slow in debug
//! builds). Each key comes with its public PEM so tests can forge "HS256 signed with the public
//! key" tokens exactly as an attacker would.
//!
//! What it must never do: be trusted by anything but a test or a demo: these private keys are
//! public.

/// One signing key: `kid`, private PKCS#8 PEM, public SPKI PEM, modulus (base64url, no pad).
pub struct AsKey {
    pub kid: &'static str,
    pub private_pem: &'static str,
    pub public_pem: &'static str,
    pub n: &'static str,
}

pub const KEYS: [AsKey; 3] = [
    AsKey {
        kid: "sim-as-1",
        private_pem: r"-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC+6MeUcj5G2bzS
Cz9iHbZ0FIUxdV8iTiSS8saX2d/dsMDlhsdUKdoVXqj62TwZ1kSVZJxG11WoVRl/
YQpX2EU8DDCxWd7u0PfhUvt9ra0CBXOy385rWhuJ+FVePrMrwFtZaHoInEZYCrvK
ang0o5qCyv1mGlksbBq9OtT/blwD0fmrlKebbHTtPwzqv4CBMvdQ1BadRiR0LgdO
nxRq7UsAMYmVsLB2TrDeajeJJwMSoDelpTVJHdG36gfGKoU1+uv9ZFlolL7rYm14
8xs9FFj7ZOJaw50v1aSkneALbbYOM1twHoOzohUJMXHNIelcQ9ge1kqhcckMDBIJ
e8GT93wDAgMBAAECggEAHNTX61XTjOyuRQR41o8JMn+029LPgsVNZbnvfxhi5D6g
6ykPKmlFq8uHdpbfKkG/StaOeW5k2866Uo/ruXeKgTaQFgCuF+AMR4W6QHE9uxvq
rL17FaBen1gXQGv0sCtVQGv0Xh+Hyh0Y3kl1DPIWUCFq4oQhKoHLCf/8EfVvRQ4q
TWOfl0l75+cZBEkKtuM61kti4+ShcvYlE1txUbAKfPq3qnM9Hh7yxJa3TY1U1ESb
dJDqyZhph7luyZjbNwlSEurBqPc7uhlR4Sd89cmHb6rRvt6lXrzLZwOBlN8kxoYR
2avbReIlCdOo8+rejas964qviXObm7GggOhb/PkiiQKBgQD4bxi7cC3NnJRaTS51
kpZaslLS6WpnxlSqNtBG33Q8kXG72C/UkVZ4r1k/w0MNApkkr4TTL/YDHRdiqtE4
Mq+b9rk3EsOGsYpwbSDs1ukOf4ia0tgdW2qWwB5IO5pTufNkj3pXdspKWQeR948w
FKixe5Eg6T83NL7K1trz0PA7mwKBgQDEuTHVGXyEmBfdECxje656kS26cS1y8r0H
BtpO7oOXhGfsVZe8IrvaaK5mEV/VEa9E5wmZjYEq8+Ccn08Wxsgl0iqsS0RdvBYX
VreGN4wpuHgAqyao2tdmTfPujbwJemRYzz3dYbPuibW+5J5JRROaPA18e/4jubTC
ZHX5TBJLuQKBgQDZCQWMSrZZGF+qfB8Ia+Wamoss4uooeuXgRj6yi+iaOV4pAvbW
N5pZmKbZw5ZCOXDc0dGyRgYgNjwF4MEi3XT5RhQM/wF+HICbM1s+TYoRNm17BJP1
IbX+uRw7coaieqMdyRLScl7LkPfCF4oqMQIm+5KQM/UcH6JGxmlF89TL3QKBgQDB
iFgIB2zCnUZMys6AiHrcRdsw4osN3NQuB4XZxThcZXw/uuztv1YDxpxb+ZfH6//7
zzdYgyeh9A7yxp9uDt10p9AndFyrwpARIdSnDBquKLaWIcqEr9bc5K+n7nQg9vGl
lSyNkMMNVxkf1ZYLCxP/1jiGUQ1yZA36eA6/1SDisQKBgD2rJvna3Z53vORklzB8
W4kfxXGNksv5oNBhTSBuDJzOVV4PMOM8MWVN/hJ0kP+nkQfpFCwN3bZQDk+bJzd2
zlOgpZrwUWVeFU6HEqb3DEyUkD2Sq8Fzu1zANDu52fVQcqrq99kqZjpkhzcRpxnc
lKLEhkG6cz8yDgSleS9/1XJU
-----END PRIVATE KEY-----
",
        public_pem: r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvujHlHI+Rtm80gs/Yh22
dBSFMXVfIk4kkvLGl9nf3bDA5YbHVCnaFV6o+tk8GdZElWScRtdVqFUZf2EKV9hF
PAwwsVne7tD34VL7fa2tAgVzst/Oa1obifhVXj6zK8BbWWh6CJxGWAq7ymp4NKOa
gsr9ZhpZLGwavTrU/25cA9H5q5Snm2x07T8M6r+AgTL3UNQWnUYkdC4HTp8Uau1L
ADGJlbCwdk6w3mo3iScDEqA3paU1SR3Rt+oHxiqFNfrr/WRZaJS+62JtePMbPRRY
+2TiWsOdL9WkpJ3gC222DjNbcB6Ds6IVCTFxzSHpXEPYHtZKoXHJDAwSCXvBk/d8
AwIDAQAB
-----END PUBLIC KEY-----
",
        n: "vujHlHI-Rtm80gs_Yh22dBSFMXVfIk4kkvLGl9nf3bDA5YbHVCnaFV6o-tk8GdZElWScRtdVqFUZf2EKV9hFPAwwsVne7tD34VL7fa2tAgVzst_Oa1obifhVXj6zK8BbWWh6CJxGWAq7ymp4NKOagsr9ZhpZLGwavTrU_25cA9H5q5Snm2x07T8M6r-AgTL3UNQWnUYkdC4HTp8Uau1LADGJlbCwdk6w3mo3iScDEqA3paU1SR3Rt-oHxiqFNfrr_WRZaJS-62JtePMbPRRY-2TiWsOdL9WkpJ3gC222DjNbcB6Ds6IVCTFxzSHpXEPYHtZKoXHJDAwSCXvBk_d8Aw",
    },
    AsKey {
        kid: "sim-as-2",
        private_pem: r"-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDJhcBK7KYghb71
8q8M7qCM6hzhQjP2+upSy4dLSxP2JNMvO/5WkhggiMq5QwDWpcZYMUR6yRa+CSBt
PM3ZQeeLDDPH5eDdgIsC/SoujcIJtCEQOrSYD3ugUdA7PhU3gxpQYaIQLtr17p81
qKYl8Rx/V645amtRuoPdGCluIa4V6xv2WgywXMOlEKPlrx+GrNZUqaNmn2PMA+lR
xtLPsaqiUfp3nZpbrnidVywvBsAOppUcXhBSaPeOehO4cZ3/yFA3b/NTw6WZHIc7
Y9HF4+7W/B48/HcGdx/ATXqsfjJWHIGsQ/Nh0PNm/OmMuggEkA//o1UC5hKsd6Pq
IqS6uLkDAgMBAAECggEAXj4LCd725+G0Rr/KBmG4On4nqF51/8wi9jpRWLBRMvzQ
uFe1n1WuK9Tc/Vus0jTvd4H+1O8ikBejjwJu/+m2t0urEZJbIStCl1C+v8uykSgo
iDb0CuK+vWBVYccsU+wfS7UE/c1zv6xqz0TCAp9p5NGj3Bz8+Fkh3q00ftkIWR3o
BWhegoQnICZFGv+hkUUnYe2eZz6dINdDkmafKiKD4j+132VNPNYzys8xctI1I+6g
ZZLK3QDG4gA25QxBQf4HSf4fnWS2BwIz1OcBV6EtZvxU25s3FSwdaXZyCANcwhaL
FLWPzeyiJRq56wPlk+SgUMHls1Ghtx/JWq0MIYQsmQKBgQDwyEmTGFRUVAYqhgq4
zn8ER4qD/AUNZdxSlXWk6XIZqNxITwChFGAqSsFsIIpCSKRkE8VfGnW+4b64pd3g
H9S0LQBjiyFUepam3pxJHR2GYeXznPOd/wGIzBViim+lwJfCVZZtafHVE5P3hzsw
2tEhit0MLeeOn0obiItPBLUleQKBgQDWQkMkwofPLLYeCKVlCYVH+IpS2YpEj+Pi
2VD6cKPGPffqJ54kW1g9kRwaOYOpmFqvug7TeZj4eiet+L6yjPGKNRkrAvRe+pQ8
dZA/uuZ/xuZqPYm847udTBmPjZD3lE8d9OpvkPQP/Y+rLfhrI23u0Ph/X7KVq2Vm
g+SEHDDfWwKBgQDMnZgQnZNEWmcnCePgqvK7o0Qt5yQv/4jc0VA5RX0GGz6fYCur
t1IFfqOijICR1YOF3FtU93pqLRLTfXjwtnweZUO4VAqN7ONLiU+MvmZRxa4ReSZ5
9LPMGYpuxDAezmzo46zC7E5rgYizyELfwIQKGiTA7d2ikPD8NuwTyW9bGQKBgFS1
2AQVoUpI3CwdsP60d+yPmGjPN3qKBUhwMTMDC81aPMVoKn8nWkjlMV4w9Rw9b0Vg
43G69r7u1PdUjFjdnrXM7olx3poaqjcJKCH6TB2izwCcGfQDee7j4os+Jl2sVmd6
qKG5hrU3w/Ci+T+qv1EXb9g0RtAj9rBEXznYR35XAoGAS4OW1qFtD1zuUG+/LBx5
CdR3+Bakyyu4Azqk/SpN18ragZ7wbcZEKPEv5FQn6LJAdKEL/UJifRu6ud1is/tH
pYyJLfy3m1HaZsklPXsMJDy+u2TfAO0dPrbwdQwWJCVFVYgv/QM+8Kh93MEu8c/V
ezpX0Gp9K033RoV2LBXTIu4=
-----END PRIVATE KEY-----
",
        public_pem: r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAyYXASuymIIW+9fKvDO6g
jOoc4UIz9vrqUsuHS0sT9iTTLzv+VpIYIIjKuUMA1qXGWDFEeskWvgkgbTzN2UHn
iwwzx+Xg3YCLAv0qLo3CCbQhEDq0mA97oFHQOz4VN4MaUGGiEC7a9e6fNaimJfEc
f1euOWprUbqD3RgpbiGuFesb9loMsFzDpRCj5a8fhqzWVKmjZp9jzAPpUcbSz7Gq
olH6d52aW654nVcsLwbADqaVHF4QUmj3jnoTuHGd/8hQN2/zU8OlmRyHO2PRxePu
1vwePPx3BncfwE16rH4yVhyBrEPzYdDzZvzpjLoIBJAP/6NVAuYSrHej6iKkuri5
AwIDAQAB
-----END PUBLIC KEY-----
",
        n: "yYXASuymIIW-9fKvDO6gjOoc4UIz9vrqUsuHS0sT9iTTLzv-VpIYIIjKuUMA1qXGWDFEeskWvgkgbTzN2UHniwwzx-Xg3YCLAv0qLo3CCbQhEDq0mA97oFHQOz4VN4MaUGGiEC7a9e6fNaimJfEcf1euOWprUbqD3RgpbiGuFesb9loMsFzDpRCj5a8fhqzWVKmjZp9jzAPpUcbSz7GqolH6d52aW654nVcsLwbADqaVHF4QUmj3jnoTuHGd_8hQN2_zU8OlmRyHO2PRxePu1vwePPx3BncfwE16rH4yVhyBrEPzYdDzZvzpjLoIBJAP_6NVAuYSrHej6iKkuri5Aw",
    },
    AsKey {
        kid: "sim-as-3",
        private_pem: r"-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDFd9gkp3XYb9n7
cTq57sW/OgZwEmBrSp72Ga/iWUmCBMU9yoBs0Ncx3epmOLZRAEKKaCUq1w5QCn2/
66iEOAc/QTFKZ1JNywPkGzWmO39JS1UyAaycLs0/SHxXcygJbBfTMZTGQbuxX6My
tt3+P7W3a0T55BCwTA7T/IdPcfJ9Q45+RX+m5mFnpiShX6vRWSlFMdLPnCsBSuN+
qkHeUyq8Rw0H0/EjuJDMCDgN0tk1aUjASin9Tf2pwvjx9fe5bPqSXBapnVu6WB7e
8W6v6yzhFBdrddOrMaB1lR0cpYpR+P42v6ZRQ8g10tYiAoDUu/FXWaSKh5osDbMF
lpbGk9klAgMBAAECggEAAQhDjZizUAKKepSfJvh6X8NXSnl+HlfeHt4H6MBovV12
OBpGTTG5fkQ+HnMVDBvBPUuWevPaDYCqIzlOWmqXw+fjI+Ch/um2lBgXhRslUWYr
nguBZUue8EHzv6biQn8mXLwTBNPniq5vG8VcjocZiLAh3mCOPPp/NVjjm2TpswGH
oh8lUdvZG9EzmY8AAUQ6hW8L9PqbjP3Zpvxf5Aex6FbnbGkcQjgygdZSIm1R4pyb
h1vLZRU8u6swlB87PUyWcfu8VEvnwplNk6CwDj0+gaYXcRrNgsnFZ1eDkW7zNVJ/
M6/qjbj7A+bvakTOyzWZ5+LQjA++RPA3wXZJZoEsfQKBgQD/7HHAVC6iy0uiNCPR
yleBfQ/lWnlV/bzywU9nSXnA/pLBTOHgOPeJbL9XI11OLKu9kXxjz8qmwnuzWq1l
0cCTwy3x+4q/QgdR9R1ALhcPa9JFafIp/B9OfF1K9VRbB8hdpjOpnS/YaHEh3QVA
lf9Un/YCFhuv7XCjxGSLFDtSEwKBgQDFhu7qXCgm3/hPpSBhhk8TyMEYB8S76FrM
GT5m6EAg73YBOId1shKIBNlp2MizSTtFkQv6bQDck/INdyUuIJeFUVyJYdRmSvyI
EiGIOp40s7oOYniXm5UXTnanwByMfV8DD6L4o7AnVZA+WqRIwCkGAp6kCrI0wcLy
zOUvHylO5wKBgQD8ubODKB59qKBh53dP3q8XMjcWWIflwRJr7zXIW6ieS0cFGDUe
RWM9FGTHWibz4e0e4KKjtjj7AKdDcFI3cDDqOh4PDkXvpPaxmopuLJWdJu6YmY0I
pO8NhIZkVWweEMtun4f5AT6USF8f/7EGHJnuKaC4YriovKM1NeXL6gjCfQKBgBJh
FcX0wT+sw1wVz0eDycPbgCwOPP4HBrvK9YV5ws3Nujsu2VvYL+U8Hka9Bx+3hq5Y
arbogZYEphceqPT7z112Tpfx5GOIQqselMQqQCJDPuKrwvDIZzz97gh51a401Cxi
vhVIldFzIrLKmFK0npySjdRRsnc6ODuDWSfjTGKtAoGBANJTmxQq/CaRincYALyg
8QfRdNoy6PkxJorzm+cmIydllVwCeRnezrdgFlxBieWSu//NYh4pN6fvIFMZ44Rf
/7kY8h7ChOyzqVwnKAvEId5JrV65espt0XFBU2WorlBzHuRfzWcufHF0vDTrRex8
Q2PL2lWSa0aeQx8E3cNXSKKt
-----END PRIVATE KEY-----
",
        public_pem: r"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAxXfYJKd12G/Z+3E6ue7F
vzoGcBJga0qe9hmv4llJggTFPcqAbNDXMd3qZji2UQBCimglKtcOUAp9v+uohDgH
P0ExSmdSTcsD5Bs1pjt/SUtVMgGsnC7NP0h8V3MoCWwX0zGUxkG7sV+jMrbd/j+1
t2tE+eQQsEwO0/yHT3HyfUOOfkV/puZhZ6YkoV+r0VkpRTHSz5wrAUrjfqpB3lMq
vEcNB9PxI7iQzAg4DdLZNWlIwEop/U39qcL48fX3uWz6klwWqZ1bulge3vFur+ss
4RQXa3XTqzGgdZUdHKWKUfj+Nr+mUUPINdLWIgKA1LvxV1mkioeaLA2zBZaWxpPZ
JQIDAQAB
-----END PUBLIC KEY-----
",
        n: "xXfYJKd12G_Z-3E6ue7FvzoGcBJga0qe9hmv4llJggTFPcqAbNDXMd3qZji2UQBCimglKtcOUAp9v-uohDgHP0ExSmdSTcsD5Bs1pjt_SUtVMgGsnC7NP0h8V3MoCWwX0zGUxkG7sV-jMrbd_j-1t2tE-eQQsEwO0_yHT3HyfUOOfkV_puZhZ6YkoV-r0VkpRTHSz5wrAUrjfqpB3lMqvEcNB9PxI7iQzAg4DdLZNWlIwEop_U39qcL48fX3uWz6klwWqZ1bulge3vFur-ss4RQXa3XTqzGgdZUdHKWKUfj-Nr-mUUPINdLWIgKA1LvxV1mkioeaLA2zBZaWxpPZJQ",
    },
];
