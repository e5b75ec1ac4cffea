//! Pod networking (bridge, veth, IPAM, NAT) lands with the sandbox issue.
