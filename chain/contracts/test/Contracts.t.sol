// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

// Runs offline without forge-std: `forge test` from chain/contracts with FOUNDRY_SOLC pointing at
// ./solc-wrapper (foundry.toml does). A test fails by reverting.

import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {TestStablecoin} from "../src/TestStablecoin.sol";
import {Issuer} from "../src/Issuer.sol";
import {WalletApprover} from "../src/WalletApprover.sol";
import {Faucet} from "../src/Faucet.sol";
import {Campaign} from "../src/Campaign.sol";
import {InvestService} from "../src/InvestService.sol";
import {MinimalEip1271Wallet} from "../src/MinimalEip1271Wallet.sol";
import {LiarCampaign, FakeIssuer, RevertingContract, GasBurner, HugeReturner} from "./Hostile.sol";

interface Vm {
    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    function addr(uint256 privateKey) external pure returns (address);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function prank(address sender) external;
    function deal(address account, uint256 newBalance) external;
    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory);
    function expectCall(address callee, bytes calldata data, uint64 count) external;
}

contract ContractsTest {
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    TestStablecoin internal usdc;
    Issuer internal issuer;
    WalletApprover internal approver;
    Faucet internal faucet;
    Campaign internal campaign;
    InvestService internal investService;

    address internal alice = address(0xA11CE);
    address internal bob = address(0xB0B);
    address internal mallory = address(0x111);

    function setUp() public {
        usdc = new TestStablecoin();
        issuer = new Issuer(address(0));
        approver = new WalletApprover();
        issuer.changeWalletApprover(address(approver));
        faucet = new Faucet(0.1 ether, 0.05 ether);
        campaign = new Campaign(address(usdc), address(issuer));
        investService = new InvestService();
        campaign.setInvestService(address(investService));
        investService.setCampaignStatus(address(campaign), true);
        approver.setIssuerStatus(address(issuer), true);
    }

    function _wallets(address a, address b) internal pure returns (address[] memory w) {
        w = new address[](2);
        w[0] = a;
        w[1] = b;
    }

    function testStablecoin() public {
        require(usdc.decimals() == 6, "decimals");
        usdc.mint(alice, 5e6);
        require(usdc.balanceOf(alice) == 5e6, "mint");
        vm.prank(alice);
        (bool ok,) = address(usdc).call(abi.encodeCall(TestStablecoin.mint, (alice, 1)));
        require(!ok, "non-owner mint must revert");
    }

    function testWalletApproverBatch() public {
        Issuer other = new Issuer(address(0)); // approver is this test contract, not `approver`
        approver.setIssuerStatus(address(other), true);
        vm.recordLogs();
        approver.approveWallets(address(issuer), _wallets(alice, address(0)));
        approver.approveWallets(address(other), _wallets(bob, alice));
        Vm.Log[] memory logs = vm.getRecordedLogs();

        require(issuer.isWalletApproved(alice), "alice approved");
        require(!other.isWalletApproved(bob), "bob not approved on other issuer");

        bytes32 sig = keccak256("ApproveWallet(address,address,bool)");
        bool[4] memory expected = [true, false, false, false];
        address[4] memory wallets = [alice, address(0), bob, alice];
        uint256 n = 0;
        for (uint256 i = 0; i < logs.length; i++) {
            if (logs[i].emitter != address(approver) || logs[i].topics[0] != sig) continue;
            require(address(uint160(uint256(logs[i].topics[2]))) == wallets[n], "event wallet");
            require(abi.decode(logs[i].data, (bool)) == expected[n], "event success");
            n++;
        }
        require(n == 4, "one ApproveWallet event per wallet");

        vm.prank(mallory);
        (bool ok,) = address(approver).call(abi.encodeCall(WalletApprover.approveWallets, (address(issuer), _wallets(bob, bob))));
        require(!ok, "not allowed approver must revert");
        approver.updateApproverStatus(mallory, true);
        require(approver.isAllowedToApprove(mallory), "mallory allowed");

        approver.suspendWallets(address(issuer), _wallets(alice, bob));
        require(!issuer.isWalletApproved(alice), "alice suspended");
    }

    function testFaucet() public {
        vm.deal(address(faucet), 1 ether);
        vm.deal(bob, 1 ether);
        vm.recordLogs();
        faucet.faucet(_wallets(alice, bob));
        require(alice.balance == 0.1 ether, "alice paid");
        require(bob.balance == 1 ether, "bob skipped");
        faucet.faucet(_wallets(alice, alice));
        require(alice.balance == 0.1 ether, "alice paid once");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 paid = 0;
        uint256 skipped = 0;
        for (uint256 i = 0; i < logs.length; i++) {
            if (logs[i].topics[0] == keccak256("FaucetPaid(address,uint256)")) paid++;
            if (logs[i].topics[0] == keccak256("FaucetSkipped(address,string)")) skipped++;
        }
        require(paid == 1 && skipped == 3, "one event per wallet");

        vm.prank(mallory);
        (bool ok,) = address(faucet).call(abi.encodeCall(Faucet.faucet, (_wallets(mallory, mallory))));
        require(!ok, "not allowed caller must revert");
    }

    function testInvestFor() public {
        usdc.mint(alice, 100e6);
        usdc.mint(bob, 10e6);
        vm.prank(alice);
        usdc.approve(address(campaign), 60e6);
        vm.prank(bob);
        usdc.approve(address(campaign), 10e6);

        InvestService.InvestmentRecord[] memory records = new InvestService.InvestmentRecord[](2);
        records[0] = InvestService.InvestmentRecord(alice, address(campaign), 80e6);
        records[1] = InvestService.InvestmentRecord(bob, address(campaign), 10e6);

        InvestService.InvestmentRecordStatus[] memory status = investService.getStatus(records);
        require(status[0].amount == 60e6 && !status[0].readyToInvest, "not approved yet");

        issuer.approveWallet(alice);
        status = investService.getStatus(records);
        require(status[0].amount == 60e6 && status[0].readyToInvest, "alice ready");
        require(status[1].amount == 10e6 && !status[1].readyToInvest, "bob not approved");
        string[] memory reasons = investService.getStatusReasons(records);
        require(bytes(reasons[0]).length == 0, "alice has no reason");
        require(keccak256(bytes(reasons[1])) == keccak256("wallet not approved"), "bob's reason");

        vm.recordLogs();
        investService.investFor(records);
        Vm.Log[] memory logs = vm.getRecordedLogs();

        require(campaign.claimedAmount(alice) == 60e6, "alice invested min(balance, allowance)");
        require(campaign.totalFundsRaised() == 60e6, "total");
        require(usdc.balanceOf(address(campaign)) == 60e6, "funds moved");

        bytes32 sig = keccak256("InvestFor(address,address,uint256,uint256,bool,string)");
        uint256 n = 0;
        for (uint256 i = 0; i < logs.length; i++) {
            if (logs[i].emitter != address(investService) || logs[i].topics[0] != sig) continue;
            (uint256 requested, uint256 invested, bool success, string memory reason) =
                abi.decode(logs[i].data, (uint256, uint256, bool, string));
            if (n == 0) {
                require(requested == 80e6 && invested == 60e6 && success && bytes(reason).length == 0, "alice event");
            } else {
                require(invested == 0 && !success, "bob event");
                require(keccak256(bytes(reason)) == keccak256("wallet not approved"), "bob reason");
            }
            n++;
        }
        require(n == 2, "one InvestFor event per record");

        // A campaign that does not trust the service: failure is reported, not reverted.
        Campaign untrusted = new Campaign(address(usdc), address(issuer));
        investService.setCampaignStatus(address(untrusted), true);
        vm.prank(alice);
        usdc.approve(address(untrusted), 5e6);
        records = new InvestService.InvestmentRecord[](1);
        records[0] = InvestService.InvestmentRecord(alice, address(untrusted), 5e6);
        vm.recordLogs();
        investService.investFor(records);
        logs = vm.getRecordedLogs();
        (,, bool ok, string memory why) = abi.decode(logs[0].data, (uint256, uint256, bool, string));
        require(!ok && keccak256(bytes(why)) == keccak256("Campaign: caller may not invest for spender"), "untrusted");

        // Only the owner and allowed callers may invest for others.
        vm.prank(bob);
        (bool allowed,) = address(investService).call(abi.encodeCall(InvestService.investFor, (records)));
        require(!allowed, "a caller that is not allowed must revert");
        investService.updateCallerStatus(bob, true);
        require(investService.isAllowedCaller(bob), "bob allowed");
        vm.prank(bob);
        investService.investFor(records);
        investService.updateCallerStatus(bob, false);
        vm.prank(bob);
        (allowed,) = address(investService).call(abi.encodeCall(InvestService.investFor, (records)));
        require(!allowed, "a disallowed caller must revert again");
        vm.prank(bob);
        (allowed,) = address(investService).call(abi.encodeCall(InvestService.updateCallerStatus, (bob, true)));
        require(!allowed, "only the owner allows callers");

        // Direct investment by the investor itself.
        vm.prank(alice);
        untrusted.invest(5e6);
        require(untrusted.claimedAmount(alice) == 5e6, "direct invest");
    }

    function _records(address investor, address target, uint256 amount)
        internal
        pure
        returns (InvestService.InvestmentRecord[] memory records)
    {
        records = new InvestService.InvestmentRecord[](1);
        records[0] = InvestService.InvestmentRecord(investor, target, amount);
    }

    function _onlyReason(Vm.Log[] memory logs) internal view returns (bool success, string memory reason) {
        bytes32 sig = keccak256("InvestFor(address,address,uint256,uint256,bool,string)");
        uint256 n = 0;
        for (uint256 i = 0; i < logs.length; i++) {
            if (logs[i].emitter != address(investService) || logs[i].topics[0] != sig) continue;
            (,, success, reason) = abi.decode(logs[i].data, (uint256, uint256, bool, string));
            n++;
        }
        require(n == 1, "one InvestFor event");
    }

    /// A contract that says every investor is ready is not called at all while it is not
    /// registered: getStatus answers "campaign not registered", investFor reports it.
    function testUnregisteredCampaignIsNeverCalled() public {
        LiarCampaign liar = new LiarCampaign();
        InvestService.InvestmentRecord[] memory records = _records(alice, address(liar), 5e6);
        vm.expectCall(address(liar), "", 0);
        InvestService.InvestmentRecordStatus[] memory status = investService.getStatus(records);
        require(!status[0].readyToInvest && status[0].amount == 0, "a liar is not ready");
        string[] memory reasons = investService.getStatusReasons(records);
        require(keccak256(bytes(reasons[0])) == keccak256("campaign not registered"), "reason");
        vm.recordLogs();
        investService.investFor(records);
        (bool success, string memory reason) = _onlyReason(vm.getRecordedLogs());
        require(!success && keccak256(bytes(reason)) == keccak256("campaign not registered"), "event");

        // Registered, then removed again: not called again.
        investService.setCampaignStatus(address(campaign), false);
        require(!investService.isRegisteredCampaign(address(campaign)), "removed");
        status = investService.getStatus(_records(alice, address(campaign), 1));
        require(!status[0].readyToInvest, "a removed campaign is not ready");

        // Only the owner registers.
        vm.prank(mallory);
        (bool ok,) = address(investService).call(
            abi.encodeCall(InvestService.setCampaignStatus, (address(liar), true))
        );
        require(!ok, "only the owner registers campaigns");
        require(!investService.isRegisteredCampaign(address(liar)), "still unregistered");
    }

    /// Even a registered campaign that burns gas, answers megabytes or reverts costs getStatus a
    /// bounded amount of gas and is simply not ready.
    function testMisbehavingRegisteredCampaignsAreBounded() public {
        address[3] memory hostile =
            [address(new GasBurner()), address(new HugeReturner()), address(new RevertingContract())];
        for (uint256 i = 0; i < hostile.length; i++) {
            investService.setCampaignStatus(hostile[i], true);
            uint256 before = gasleft();
            InvestService.InvestmentRecordStatus[] memory status =
                investService.getStatus(_records(alice, hostile[i], 1));
            require(before - gasleft() < 400_000, "bounded gas");
            require(!status[0].readyToInvest, "not ready");
            string[] memory reasons = investService.getStatusReasons(_records(alice, hostile[i], 1));
            require(keccak256(bytes(reasons[0])) == keccak256("campaign stablecoin unavailable"), "reason");
        }
    }

    /// approveWallets for an issuer that is not registered reverts before calling it, even one
    /// that names this WalletApprover as its approver.
    function testUnregisteredIssuerIsNeverCalled() public {
        FakeIssuer fake = new FakeIssuer(address(approver));
        require(fake.walletApprover() == address(approver), "the fake claims our approver");
        vm.expectCall(address(fake), "", 0);
        (bool ok,) = address(approver).call(
            abi.encodeCall(WalletApprover.approveWallets, (address(fake), _wallets(alice, bob)))
        );
        require(!ok, "an unregistered issuer reverts the batch");
        (ok,) = address(approver).call(
            abi.encodeCall(WalletApprover.suspendWallets, (address(fake), _wallets(alice, bob)))
        );
        require(!ok, "suspending too");

        approver.setIssuerStatus(address(issuer), false);
        require(!approver.isRegisteredIssuer(address(issuer)), "removed");
        (ok,) = address(approver).call(
            abi.encodeCall(WalletApprover.approveWallets, (address(issuer), _wallets(alice, bob)))
        );
        require(!ok, "a removed issuer reverts the batch");
        require(!issuer.isWalletApproved(alice), "nothing approved");

        vm.prank(mallory);
        (ok,) = address(approver).call(abi.encodeCall(WalletApprover.setIssuerStatus, (address(fake), true)));
        require(!ok, "only the owner registers issuers");
    }

    function testEip1271() public {
        uint256 key = 0xA11CE5;
        MinimalEip1271Wallet wallet = new MinimalEip1271Wallet(vm.addr(key));
        bytes32 hash = MessageHashUtils.toEthSignedMessageHash(bytes("ampflow login nonce 42"));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, hash);
        require(wallet.isValidSignature(hash, abi.encodePacked(r, s, v)) == bytes4(0x1626ba7e), "valid");
        require(wallet.isValidSignature(hash, abi.encodePacked(r, s, v - 27)) == bytes4(0x1626ba7e), "v 0/1");
        (v, r, s) = vm.sign(key + 1, hash);
        require(wallet.isValidSignature(hash, abi.encodePacked(r, s, v)) == bytes4(0xffffffff), "wrong signer");
        require(wallet.isValidSignature(hash, hex"1234") == bytes4(0xffffffff), "malformed");
    }
}
