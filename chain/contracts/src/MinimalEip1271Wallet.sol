// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";

/// @title MinimalEip1271Wallet
/// @notice A minimal contract wallet whose signatures are those of its owner (EIP-1271).
/// @dev `hash` is checked as given: for a personal_sign message the caller passes the EIP-191
///      hash of the message. A 65-byte (r, s, v) signature with v in {0, 1} or {27, 28} is
///      accepted; high-s signatures are rejected (OpenZeppelin ECDSA).
contract MinimalEip1271Wallet is IERC1271 {
    bytes4 internal constant MAGIC_VALUE = 0x1626ba7e;
    bytes4 internal constant INVALID_VALUE = 0xffffffff;

    address public owner;

    event OwnerChanged(address indexed previousOwner, address indexed newOwner);

    constructor(address owner_) {
        require(owner_ != address(0), "MinimalEip1271Wallet: invalid owner");
        owner = owner_;
        emit OwnerChanged(address(0), owner_);
    }

    function changeOwner(address newOwner) external {
        require(msg.sender == owner, "MinimalEip1271Wallet: caller is not the owner");
        require(newOwner != address(0), "MinimalEip1271Wallet: invalid owner");
        emit OwnerChanged(owner, newOwner);
        owner = newOwner;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view override returns (bytes4) {
        bytes memory sig = signature;
        if (sig.length == 65 && uint8(sig[64]) < 27) {
            sig[64] = bytes1(uint8(sig[64]) + 27);
        }
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(hash, sig);
        if (err == ECDSA.RecoverError.NoError && recovered == owner) {
            return MAGIC_VALUE;
        }
        return INVALID_VALUE;
    }
}
